//! `kpsim`: the command line. Parses flags, calls the library, prints.
//! Output goes to stdout; errors go to stderr with a non-zero exit.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use kpsim::oneshot::{render, with_service_cidrs, RenderRequest};
use kpsim::scenario::{self, EndState};
use kpsim::trace::{Probe, TraceRequest};
use proxier::config::{self, Config, Mode};
use proxier::k8s::{self, IpFamily, Manifests};

#[derive(Parser)]
#[command(
    name = "kpsim",
    version,
    about = "kube-proxy, rebuilt as a deterministic node-network simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the rules one full sync writes for these manifests.
    Rules(RulesArgs),
    /// Replay a scenario on the simulator (default: the embedded tour).
    Run(RunArgs),
    /// Trace one new packet through a node holding these manifests' rules.
    Trace(TraceArgs),
    /// Write one full sync of these manifests into the real kernel (root).
    Apply(ApplyArgs),
    /// Remove kube-proxy's rules from the real kernel, like `kube-proxy --cleanup`.
    Cleanup(CleanupArgs),
    /// Print how per-packet rule evaluations grow with the service count.
    Scale(ScaleArgs),
}

/// The proxy and node flags `rules`, `trace` and `apply` share.
#[derive(clap::Args)]
struct ProxyArgs {
    /// Proxy mode (overrides the config's `mode`).
    #[arg(long, value_parser = MODES)]
    mode: Option<String>,
    /// A KubeProxyConfiguration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The node to render for (default: hostnameOverride, or the only Node).
    #[arg(long)]
    node: Option<String>,
    /// The node's IP (repeatable; default: the Node's status.addresses).
    #[arg(long = "node-ip")]
    node_ips: Vec<IpAddr>,
    /// A service CIDR (repeatable), for inputs without ServiceCIDR objects
    /// (nftables mode drops traffic to unallocated ClusterIPs in them).
    #[arg(long = "service-cidr")]
    service_cidrs: Vec<ipnet::IpNet>,
}

/// The proxy modes, as `--mode` spells them.
const MODES: [&str; 3] = ["iptables", "ipvs", "nftables"];

/// Flags that describe the node by hand, which a scenario describes itself.
const NOT_WITH_SCENARIO: [&str; 4] = ["config", "node_ips", "service_cidrs", "files"];

#[derive(clap::Args)]
struct ApplyArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Run inside this network namespace (`ip netns`), not the caller's.
    #[arg(long)]
    netns: Option<String>,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct CleanupArgs {
    /// Clean up one mode's objects.
    #[arg(long, value_parser = MODES, conflicts_with = "all")]
    mode: Option<String>,
    /// Clean up every mode's objects (upstream's `kube-proxy --cleanup`).
    #[arg(long)]
    all: bool,
    #[arg(long)]
    netns: Option<String>,
}

#[derive(clap::Args)]
struct ScaleArgs {
    /// Service counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    services: Vec<usize>,
    /// Endpoints per service.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Modes to measure, in row order.
    #[arg(long, value_delimiter = ',', value_parser = MODES, default_value = "iptables,ipvs,nftables")]
    modes: Vec<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(clap::Args)]
struct TraceArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Trace on this scenario's node at the scenario's end state (its
    /// kernel as the last step left it) instead of manifests.
    #[arg(long, conflicts_with_all = NOT_WITH_SCENARIO)]
    scenario: Option<PathBuf>,
    /// Source, `IP` or `IP:PORT` (a node address: locally generated).
    #[arg(long)]
    from: String,
    /// Destination, `IP:PORT`.
    #[arg(long)]
    to: String,
    #[arg(long, value_parser = ["tcp", "udp", "sctp"], default_value = "tcp")]
    proto: String,
    /// Seed for the random rule choices of the path actually taken
    /// (default 1; with --scenario, the scenario's seed).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// Manifests: Services, EndpointSlices, Nodes (YAML or JSON; `-` for stdin).
    #[arg(required_unless_present = "scenario")]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A scenario file; without one, the embedded tour runs.
    scenario: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run in this mode only (default: the scenario's modes).
    #[arg(long, value_parser = MODES)]
    mode: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// What one sync writes, exactly as kube-proxy writes it: the
    /// iptables-restore payload (iptables), the `nft -f` transaction
    /// (nftables), the IPVS state and helper payload (ipvs).
    #[value(alias = "transaction")]
    Restore,
    /// iptables and ipvs modes: the node's tables afterwards, as
    /// iptables-save lists them.
    Save,
    /// nftables mode: the node's ruleset afterwards, as `nft list ruleset`
    /// prints it.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum Family {
    Ipv4,
    Ipv6,
}

#[derive(clap::Args)]
struct RulesArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Render for this scenario's objects at its end state, on `--node`
    /// (with the node's configuration as the run left it), instead of
    /// manifests.
    #[arg(long, conflicts_with_all = NOT_WITH_SCENARIO)]
    scenario: Option<PathBuf>,
    /// With --scenario: the scenario's seed to play it with.
    #[arg(long, requires = "scenario")]
    seed: Option<u64>,
    /// Which IP family's rules (default: the node's primary IP's).
    #[arg(long, value_enum)]
    ip_family: Option<Family>,
    /// What to print: `restore` (default; also `transaction`) in every
    /// mode; `save` in iptables and ipvs modes; `list` in nftables mode.
    #[arg(long, value_enum, default_value = "restore")]
    format: Format,
    /// Manifests: Services, EndpointSlices, Nodes (YAML or JSON; `-` for stdin).
    #[arg(required_unless_present = "scenario")]
    files: Vec<PathBuf>,
}

fn read(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn load_manifests(files: &[PathBuf]) -> Result<Manifests> {
    let mut all = Manifests::default();
    for f in files {
        let text = read(f)?;
        all.extend(k8s::load_str(&f.display().to_string(), &text)?);
    }
    for (source, what) in &all.skipped {
        eprintln!("kpsim: {source}: skipping {what} (kube-proxy does not watch this kind)");
    }
    Ok(all)
}

fn load_config(path: Option<&PathBuf>, mode: Option<&str>) -> Result<Config> {
    let mut cfg = match path {
        Some(p) => config::load_str(&p.display().to_string(), &read(p)?)?,
        None => Config::default(),
    };
    if let Some(m) = mode {
        cfg.mode = parse_mode(m)?;
    }
    Ok(cfg)
}

fn parse_mode(m: &str) -> Result<Mode> {
    Mode::parse(m).map_err(anyhow::Error::msg)
}

impl ProxyArgs {
    /// The config, manifests and node these flags and `files` name.
    fn render_request(self, files: &[PathBuf]) -> Result<RenderRequest> {
        Ok(RenderRequest {
            config: load_config(self.config.as_ref(), self.mode.as_deref())?,
            manifests: with_service_cidrs(
                load_manifests(files)?,
                "--service-cidr",
                self.service_cidrs,
            ),
            node: self.node,
            node_ips: self.node_ips,
            family: None,
        })
    }
}

/// Plays a scenario file (in `mode`, default its first) to its end state.
fn scenario_end(path: &PathBuf, mode: Option<&str>, seed: Option<u64>) -> Result<EndState> {
    let plan = scenario::load(&path.display().to_string(), &read(path)?)?;
    let mode = mode.map(parse_mode).transpose()?;
    scenario::end_state(&plan, seed, mode)
}

fn rules(args: RulesArgs) -> Result<()> {
    let mut req = match &args.scenario {
        Some(path) => scenario_end(path, args.proxy.mode.as_deref(), args.seed)?
            .render_request(args.proxy.node.as_deref())?,
        None => args.proxy.render_request(&args.files)?,
    };
    let mode = req.config.mode;
    match (args.format, mode) {
        (Format::List, Mode::Iptables | Mode::Ipvs) => anyhow::bail!(
            "--format list prints `nft list ruleset`, which only nftables mode fills; use --format save for {} mode, or --mode nftables",
            mode.name()
        ),
        (Format::Save, Mode::Nftables) => anyhow::bail!(
            "--format save prints iptables-save, which nftables mode leaves empty; use --format list for the nftables ruleset"
        ),
        _ => {}
    }
    req.family = args.ip_family.map(|f| match f {
        Family::Ipv4 => IpFamily::V4,
        Family::Ipv6 => IpFamily::V6,
    });
    let out = render(&req)?;
    match args.format {
        Format::Restore => print!("{}", out.default_output()),
        Format::Save => print!("{}", out.save),
        Format::List => print!("{}", out.nft_list.unwrap_or_default()),
    }
    Ok(())
}

/// `IP`, `IP:PORT`, `[V6]:PORT`.
fn parse_addr(text: &str, what: &str) -> Result<(IpAddr, Option<u16>)> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let sock: std::net::SocketAddr = text.parse().map_err(|_| {
        anyhow::anyhow!("{what} {text:?} is not IP or IP:PORT (IPv6 as [fd00::1]:80)")
    })?;
    Ok((sock.ip(), Some(sock.port())))
}

fn trace(args: TraceArgs) -> Result<()> {
    let (from, from_port) = parse_addr(&args.from, "--from")?;
    let (to, to_port) = parse_addr(&args.to, "--to")?;
    let probe = Probe {
        from,
        from_port,
        to,
        to_port: to_port.ok_or_else(|| anyhow::anyhow!("--to needs a port: IP:PORT"))?,
        protocol: match args.proto.as_str() {
            "udp" => proxier::k8s::Protocol::Udp,
            "sctp" => proxier::k8s::Protocol::Sctp,
            _ => proxier::k8s::Protocol::Tcp,
        },
    };
    let result = match &args.scenario {
        Some(path) => {
            let mut end = scenario_end(path, args.proxy.mode.as_deref(), args.seed)?;
            let (info, config) = end.node(args.proxy.node.as_deref())?;
            let (info, mode) = (info.clone(), config.mode);
            let node = end.net.node_mut(&info.name)?;
            kpsim::trace::trace_on(node, &info, mode, &probe, end.now)?
        }
        None => {
            let render = args.proxy.render_request(&args.files)?;
            kpsim::trace::trace(&TraceRequest {
                mode: render.config.mode,
                render,
                probe,
                seed: args.seed.unwrap_or(1),
            })?
        }
    };
    match args.output {
        Output::Text => print!("{}", kpsim::trace::render_text(&result)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&result)?),
    }
    Ok(())
}

fn apply(args: ApplyArgs) -> Result<()> {
    let req = args.proxy.render_request(&args.files)?;
    let report = kpsim::kernel_apply::apply(&req, args.netns.as_deref())?;
    print!("{}", report.summary());
    Ok(())
}

fn cleanup(args: CleanupArgs) -> Result<()> {
    use kpsim::kernel_apply::CleanupScope;
    let scope = match (args.all, args.mode.as_deref()) {
        (true, _) | (false, None) => CleanupScope::All,
        (false, Some(m)) => CleanupScope::Mode(parse_mode(m)?),
    };
    let outcome = kpsim::kernel_apply::cleanup(scope, args.netns.as_deref())?;
    for removed in &outcome.report.removed {
        println!("removed {removed}");
    }
    for note in &outcome.not_done {
        eprintln!("kpsim: not done: {note}");
    }
    if !outcome.report.is_ok() {
        let errors: Vec<String> = outcome
            .report
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect();
        anyhow::bail!("cleanup finished with errors:\n{}", errors.join("\n"));
    }
    Ok(())
}

fn scale(args: ScaleArgs) -> Result<()> {
    let modes = args
        .modes
        .iter()
        .map(|m| parse_mode(m))
        .collect::<Result<Vec<_>>>()?;
    let rows = kpsim::scale::measure_with(&kpsim::scale::ScaleRequest {
        sizes: args.services,
        endpoints: args.endpoints,
        modes,
        seed: args.seed,
    })?;
    match args.output {
        Output::Text => print!("{}", kpsim::scale::render_text(&rows)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
    }
    Ok(())
}

/// The scenario `kpsim run` plays without an argument.
const TOUR: &str = include_str!("../scenarios/tour.yaml");

/// Returns whether every expectation held.
fn run(args: RunArgs) -> Result<bool> {
    let (name, text) = match &args.scenario {
        Some(path) => (path.display().to_string(), read(path)?),
        None => (
            "scenarios/tour.yaml (embedded)".to_string(),
            TOUR.to_string(),
        ),
    };
    let plan = scenario::load(&name, &text)?;
    let mode = args.mode.as_deref().map(parse_mode).transpose()?;
    let reports = scenario::run(&plan, args.seed, mode)?;
    match args.output {
        Output::Text => {
            for r in &reports {
                print!("{}", scenario::render_text(r));
            }
        }
        Output::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
    }
    Ok(reports.iter().all(|r| r.passed()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rules(args) => rules(args).map(|()| true),
        Command::Run(args) => run(args),
        Command::Trace(args) => trace(args).map(|()| true),
        Command::Scale(args) => scale(args).map(|()| true),
        Command::Apply(args) => apply(args).map(|()| true),
        Command::Cleanup(args) => cleanup(args).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kpsim: {e:#}");
            ExitCode::from(2)
        }
    }
}
