//! Building what the IPVS VM boots, following
//! `../shared/notes/ipvs-in-a-vm.md`: Debian's cloud kernel (fetched with
//! `apt-get download`, unpacked with `dpkg -x`, `depmod -b`), and a base
//! initramfs holding busybox-static, iproute2's `ip`, `ipvsadm`, `ipset`,
//! `iptables-legacy` (with its extensions), `xtables-nft-multi` and `nft`
//! (for the differential harness), their shared libraries, the kernel
//! modules the guests need in dependency order, and an `/init`.
//! Both are cached under `target/kpsim-vm/` (a `.done` stamp marks a
//! finished piece), so only the first run downloads and packs.
//!
//! Per run, [`extra_archive`] packs the binaries under test (debug info
//! stripped) and data directories (manifests, scenarios) into a second, uncompressed cpio archive
//! that is appended to the base one; the kernel unpacks both.
//!
//! Errors are `String`s saying which step failed and what the tool said.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The modules the guest loads (dependencies are added from
/// `modules.dep`; built-in ones are skipped).
pub const MODULES: &[&str] = &[
    "crc32c_generic",
    "veth",
    "dummy",
    "nf_conntrack",
    "nf_conntrack_netlink",
    "nf_nat",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_lc",
    "ip_vs_wlc",
    "ip_vs_sh",
    "ip_vs_dh",
    "ip_vs_sed",
    "ip_vs_nq",
    "ip_vs_mh",
    "ip_tables",
    "iptable_nat",
    "iptable_filter",
    "iptable_mangle",
    "ip6_tables",
    "ip6table_nat",
    "ip6table_filter",
    "ip6table_mangle",
    "xt_comment",
    "xt_mark",
    "xt_MASQUERADE",
    "xt_addrtype",
    "xt_conntrack",
    "xt_physdev",
    "xt_ipvs",
    "ipt_REJECT",
    "ip6t_REJECT",
    "xt_set",
    "ip_set_hash_ip",
    "ip_set_hash_ipport",
    "ip_set_hash_ipportip",
    "ip_set_hash_ipportnet",
    "ip_set_bitmap_port",
    // The differential harness's cluster (`kpsim::kernel_cluster`): the
    // fabric bridge, `nft` for balancers and node failures, iptables-nft
    // for the generated cases' nft variant. (Not `br_netfilter`: with it,
    // 6.1 skips the fabric's bridge-family forward chain at priority 0, so
    // a "down" node kept answering.)
    "bridge",
    "nf_tables",
    "nft_compat",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_ct",
    "nft_numgen",
    "nft_reject",
    "nft_reject_ipv4",
    "nft_reject_ipv6",
    "nft_reject_inet",
    "nft_meta_bridge",
    "nfnetlink_acct",
    "xt_tcpudp",
    "xt_multiport",
    "xt_statistic",
    "xt_nat",
];

/// Bumped whenever what goes into the base image changes (its cache name).
const BASE_REVISION: u32 = 4;

/// Binaries copied into the base image, with their `ldd` libraries.
const BINARIES: &[&str] = &[
    "/usr/sbin/ip",
    "/usr/sbin/ipvsadm",
    "/usr/sbin/ipset",
    "/usr/sbin/xtables-legacy-multi",
    // Only the differential job links `iptables-nft*` to it (see
    // `ipvs_vm_diff`): without the links, kpsim's detection finds legacy
    // only, which the apply checks rely on.
    "/usr/sbin/xtables-nft-multi",
    "/usr/sbin/nft",
];

const XTABLES_DIR: &str = "/usr/lib/x86_64-linux-gnu/xtables";

/// `iptables-legacy` tools: symlinks to `xtables-legacy-multi`.
const XTABLES_LINKS: &[&str] = &[
    "iptables-legacy",
    "iptables-legacy-save",
    "iptables-legacy-restore",
    "ip6tables-legacy",
    "ip6tables-legacy-save",
    "ip6tables-legacy-restore",
];

/// The unpacked kernel.
pub struct Kernel {
    pub version: String,
    pub root: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.version))
    }
    fn modules_dir(&self) -> PathBuf {
        self.root.join(format!("lib/modules/{}", self.version))
    }
}

/// Runs a command; its stdout, or an error naming it and what it said.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sh(script: &str) -> Result<String, String> {
    run(Command::new("sh").args(["-c", script]))
}

/// The versioned package `linux-image-cloud-amd64` depends on.
pub fn kernel_package() -> Result<String, String> {
    let out = run(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
        .map(str::to_string)
        .ok_or_else(|| {
            format!("no versioned kernel in `apt-cache depends linux-image-cloud-amd64`:\n{out}")
        })
}

/// Fetches and unpacks the kernel into `cache` (once).
pub fn kernel(cache: &Path) -> Result<Kernel, String> {
    let package = kernel_package()?;
    let version = package.trim_start_matches("linux-image-").to_string();
    let root = cache.join(format!("kernel-{version}"));
    let kernel = Kernel { version, root };
    if root_done(&kernel.root) {
        return Ok(kernel);
    }
    fs::create_dir_all(cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    run(Command::new("apt-get")
        .args(["download", "-q", &package])
        .current_dir(cache))?;
    let deb = fs::read_dir(cache)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
        })
        .ok_or_else(|| {
            format!(
                "apt-get download {package} left no .deb in {}",
                cache.display()
            )
        })?;
    let _ = fs::remove_dir_all(&kernel.root);
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&kernel.root))?;
    run(Command::new("depmod")
        .arg("-b")
        .arg(&kernel.root)
        .arg(&kernel.version))?;
    mark_done(&kernel.root)?;
    Ok(kernel)
}

fn root_done(dir: &Path) -> bool {
    dir.join(".done").exists()
}

fn mark_done(dir: &Path) -> Result<(), String> {
    fs::write(dir.join(".done"), "").map_err(|e| format!("{}: {e}", dir.display()))
}

fn module_name(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .replace('-', "_")
}

/// The `.ko` paths (relative to the modules directory) to load, each after
/// its dependencies; and the wanted names that are neither modules nor
/// built in.
pub fn module_order(
    modules_dep: &str,
    builtin: &str,
    wanted: &[&str],
) -> (Vec<String>, Vec<String>) {
    let deps: Vec<(String, Vec<String>)> = modules_dep
        .lines()
        .filter_map(|l| {
            let (m, d) = l.split_once(':')?;
            Some((
                m.to_string(),
                d.split_whitespace().map(str::to_string).collect(),
            ))
        })
        .collect();
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    let mut missing = Vec::new();
    fn visit(path: &str, deps: &[(String, Vec<String>)], order: &mut Vec<String>) {
        if order.iter().any(|o| o == path) {
            return;
        }
        if let Some((_, ds)) = deps.iter().find(|(m, _)| m == path) {
            for d in ds {
                visit(d, deps, order);
            }
        }
        order.push(path.to_string());
    }
    for want in wanted {
        let name = want.replace('-', "_");
        match deps.iter().find(|(m, _)| module_name(m) == name) {
            Some((path, _)) => visit(path, &deps, &mut order),
            None if builtin.contains(&name) => {}
            None => missing.push(want.to_string()),
        }
    }
    (order, missing)
}

/// The shared libraries `ldd` names for `binary`.
fn libraries(binary: &str) -> Result<Vec<String>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("ldd {binary}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(str::to_string)
        .collect())
}

/// Copies `file` to the same path under `root` (following symlinks).
fn copy_in(root: &Path, file: &str) -> Result<(), String> {
    let to = root.join(file.trim_start_matches('/'));
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    fs::copy(file, &to).map_err(|e| format!("copying {file}: {e}"))?;
    Ok(())
}

/// `/init`: mount, load the modules, run the guest, print its verdict.
fn init_script(version: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /tmp
for m in $(cat /kpsim-modules); do
  insmod /lib/modules/{version}/$m || echo "KPSIM-VM-INSMOD-FAILED $m"
done
/usr/sbin/ip link set lo up
if [ -x /run-guest ]; then /run-guest; rc=$?; else echo "no /run-guest"; rc=99; fi
echo "KPSIM-VM-EXIT=$rc"
poweroff -f
"#
    )
}

/// Builds (once) the base initramfs for `kernel`; returns its path.
pub fn base_initramfs(cache: &Path, kernel: &Kernel) -> Result<PathBuf, String> {
    let name = format!("base-{}-r{BASE_REVISION}", kernel.version);
    let out = cache.join(format!("{name}.cpio.gz"));
    let stamp = cache.join(format!("{name}.done"));
    if out.exists() && stamp.exists() {
        return Ok(out);
    }
    let root = cache.join(&name);
    let _ = fs::remove_dir_all(&root);
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "etc", "var",
    ] {
        fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    copy_in(&root, "/bin/busybox")?;
    let mut libs = BTreeSet::new();
    libs.insert("/lib64/ld-linux-x86-64.so.2".to_string());
    for b in BINARIES {
        copy_in(&root, b)?;
        libs.extend(libraries(b)?);
    }
    for l in XTABLES_LINKS {
        std::os::unix::fs::symlink("xtables-legacy-multi", root.join("usr/sbin").join(l))
            .map_err(|e| e.to_string())?;
    }
    for e in fs::read_dir(XTABLES_DIR).map_err(|e| format!("{XTABLES_DIR}: {e}"))? {
        let p = e.map_err(|e| e.to_string())?.path();
        let p = p.to_string_lossy().into_owned();
        copy_in(&root, &p)?;
        libs.extend(libraries(&p)?);
    }
    for l in &libs {
        copy_in(&root, l)?;
    }
    for f in ["/etc/protocols", "/etc/services", "/etc/nsswitch.conf"] {
        if Path::new(f).exists() {
            copy_in(&root, f)?;
        }
    }
    let mdir = kernel.modules_dir();
    let dep = fs::read_to_string(mdir.join("modules.dep")).map_err(|e| e.to_string())?;
    let builtin = fs::read_to_string(mdir.join("modules.builtin")).unwrap_or_default();
    let (order, missing) = module_order(&dep, &builtin, MODULES);
    if !missing.is_empty() {
        println!(
            "ipvs vm: kernel {} has no modules {missing:?} (skipped)",
            kernel.version
        );
    }
    let rel_root = format!("lib/modules/{}", kernel.version);
    for m in &order {
        let to = root.join(&rel_root).join(m);
        fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        fs::copy(mdir.join(m), &to).map_err(|e| format!("copying module {m}: {e}"))?;
    }
    fs::write(root.join("kpsim-modules"), order.join("\n") + "\n").map_err(|e| e.to_string())?;
    let init = root.join("init");
    fs::write(&init, init_script(&kernel.version)).map_err(|e| e.to_string())?;
    sh(&format!("chmod 755 '{}'", init.display()))?;
    sh(&format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        root.display(),
        out.display()
    ))?;
    fs::write(&stamp, "").map_err(|e| e.to_string())?;
    Ok(out)
}

/// Packs this run's files into an uncompressed cpio archive: the test
/// binary and kpsim (debug info stripped), their libraries, each of
/// `dirs`' files under `/NAME` (`(directory, NAME)`: manifests, scenarios)
/// and `/run-guest`.
pub fn extra_archive(
    dir: &Path,
    test_binary: &Path,
    kpsim: &Path,
    dirs: &[(&Path, &str)],
    guest_script: &str,
) -> Result<PathBuf, String> {
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    for (from, to) in [(test_binary, "kpsim-tests"), (kpsim, "kpsim")] {
        run(Command::new("objcopy")
            .arg("--strip-debug")
            .arg(from)
            .arg(root.join(to)))?;
        for l in libraries(&from.to_string_lossy())? {
            copy_in(&root, &l)?;
        }
    }
    for (from, name) in dirs {
        fs::create_dir_all(root.join(name)).map_err(|e| e.to_string())?;
        for e in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_file() {
                fs::copy(&p, root.join(name).join(p.file_name().unwrap_or_default()))
                    .map_err(|e| format!("copying {}: {e}", p.display()))?;
            }
        }
    }
    let script = root.join("run-guest");
    fs::write(&script, guest_script).map_err(|e| e.to_string())?;
    sh(&format!("chmod 755 '{}'", script.display()))?;
    let out = dir.join("extra.cpio");
    sh(&format!(
        "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
        root.display(),
        out.display()
    ))?;
    Ok(out)
}

#[test]
fn modules_load_after_their_dependencies() {
    let dep = "kernel/net/netfilter/ipvs/ip_vs_rr.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko\n\
        kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko\n\
        kernel/net/netfilter/nf_conntrack.ko: kernel/lib/libcrc32c.ko\n\
        kernel/lib/libcrc32c.ko:\n";
    let (order, missing) = module_order(
        dep,
        "kernel/drivers/net/dummy.ko\n",
        &["ip_vs_rr", "dummy", "nope"],
    );
    assert_eq!(
        order,
        [
            "kernel/lib/libcrc32c.ko",
            "kernel/net/netfilter/nf_conntrack.ko",
            "kernel/net/netfilter/ipvs/ip_vs.ko",
            "kernel/net/netfilter/ipvs/ip_vs_rr.ko"
        ]
    );
    assert_eq!(missing, ["nope"]);
}
