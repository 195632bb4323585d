//! `kpsim`: the command line. Parses flags, calls the library, prints.
//! Output goes to stdout; errors go to stderr with a non-zero exit.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use kpsim::oneshot::{render, RenderRequest};
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The iptables-restore payload, exactly as kube-proxy writes it.
    Restore,
    /// The tables as iptables-save lists them on the node afterwards.
    Save,
}

#[derive(Clone, Copy, ValueEnum)]
enum Family {
    Ipv4,
    Ipv6,
}

#[derive(clap::Args)]
struct RulesArgs {
    /// Proxy mode (overrides the config's `mode`).
    #[arg(long, value_parser = ["iptables", "ipvs", "nftables"])]
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
    /// Which IP family's rules (default: the node's primary IP's).
    #[arg(long, value_enum)]
    ip_family: Option<Family>,
    #[arg(long, value_enum, default_value = "restore")]
    format: Format,
    /// Manifests: Services, EndpointSlices, Nodes (YAML or JSON; `-` for stdin).
    #[arg(required = true)]
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
        cfg.mode = Mode::parse(m).map_err(anyhow::Error::msg)?;
    }
    Ok(cfg)
}

fn rules(args: RulesArgs) -> Result<()> {
    let config = load_config(args.config.as_ref(), args.mode.as_deref())?;
    let manifests = load_manifests(&args.files)?;
    let req = RenderRequest {
        config,
        manifests,
        node: args.node,
        node_ips: args.node_ips,
        family: args.ip_family.map(|f| match f {
            Family::Ipv4 => IpFamily::V4,
            Family::Ipv6 => IpFamily::V6,
        }),
    };
    let out = render(&req)?;
    match args.format {
        Format::Restore => print!("{}", out.restore),
        Format::Save => print!("{}", out.save),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rules(args) => rules(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kpsim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
