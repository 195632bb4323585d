//! IPVS mode against a real IPVS: a QEMU VM booting Debian's cloud kernel
//! (this machine's kernel has no `CONFIG_IP_VS`), built and run as
//! `../shared/notes/ipvs-in-a-vm.md` records.
//!
//! The host side ([`ipvs_in_a_vm`]) fetches and caches the kernel and a
//! base initramfs ([`image`]), appends this test binary and `kpsim` as a
//! second archive, boots with `-accel tcg`, and reads the verdict from the
//! serial console: `KPSIM-VM-EXIT=<rc>`, with every `KPSIM-VM` line echoed
//! and the whole console printed on failure.
//!
//! Inside the VM the same test binary runs [`vm_guest_entry`] (only when
//! `KPSIM_VM_GUEST=1`; on a host it returns at once), which does the
//! checks of [`guest`]: `kpsim apply --mode ipvs` per manifest set,
//! `ipvsadm -Ln`, `ipset list` and the `kube-ipvs0` addresses against
//! `kpsim rules --mode ipvs`, real connections through IPVS from a client
//! namespace to backend namespaces, and `kpsim cleanup --mode ipvs`
//! leaving nothing behind.
//!
//! Skips with one line when not root, or when qemu, apt, the network or a
//! tool is missing.

#[path = "vm/guest.rs"]
mod guest;
#[path = "vm/image.rs"]
mod image;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proxier::kernel::exec::{debian_package, find_tool};

/// Tools the host needs, with their Debian packages.
const HOST_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("cpio", "cpio"),
    ("ipvsadm", "ipvsadm"),
    ("ipset", "ipset"),
    ("depmod", "kmod"),
    ("apt-get", "apt"),
    ("dpkg", "dpkg"),
    ("objcopy", "binutils"),
    ("ldd", "libc-bin"),
    ("xtables-legacy-multi", "iptables"),
    ("ip", "iproute2"),
];

/// Boot timeout in seconds (a run takes well under a minute).
const VM_TIMEOUT: u32 = 150;

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kpsim-vm")
}

/// Why the VM test cannot run here, if it cannot.
fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!("needs root (running as uid {euid})"));
    }
    let tools: Vec<String> = HOST_TOOLS
        .iter()
        .filter(|(t, _)| find_tool(t).is_none())
        .map(|(t, p)| format!("`{t}` (Debian package {p})"))
        .collect();
    if !tools.is_empty() {
        return Some(format!("missing {}", tools.join(", ")));
    }
    if Command::new("busybox")
        .arg("true")
        .status()
        .map_or(true, |s| !s.success())
    {
        return Some(format!(
            "`busybox` does not run (Debian package {})",
            debian_package("busybox")
        ));
    }
    None
}

/// The command `/run-guest` runs inside the VM.
fn guest_script() -> String {
    "#!/bin/sh\nexport KPSIM_VM_GUEST=1 KPSIM_BIN=/kpsim KPSIM_MANIFESTS=/manifests RUST_BACKTRACE=1\n\
     exec /kpsim-tests --exact ipvs_vm::vm_guest_entry --nocapture --test-threads 1 -q\n"
        .to_string()
}

/// Held while a VM runs (see [`boot`]).
static VM_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What one VM run printed on its serial console.
pub struct VmRun {
    pub console: String,
    pub stderr: String,
    pub kernel: String,
    pub elapsed: std::time::Duration,
}

impl VmRun {
    /// The guest's exit code (`KPSIM-VM-EXIT=<rc>`), if it got that far.
    pub fn exit_code(&self) -> Option<&str> {
        self.console
            .lines()
            .find_map(|l| l.strip_prefix("KPSIM-VM-EXIT="))
            .map(str::trim)
    }

    /// The guest exited 0 and every module loaded.
    pub fn passed(&self) -> bool {
        self.exit_code() == Some("0") && !self.console.contains("KPSIM-VM-INSMOD-FAILED")
    }
}

/// Boots the VM with this test binary, `kpsim`, `dirs` (`(directory,
/// NAME)`, packed as `/NAME`) and `/run-guest` = `guest_script`; `None`
/// (after one line saying why) when it cannot run here. `timeout` is in
/// seconds; `memory` in MiB; `cpus` virtual CPUs (TCG runs one host thread
/// each).
pub fn boot(
    test: &str,
    guest_script: &str,
    dirs: &[(&Path, &str)],
    timeout: u32,
    memory: u32,
    cpus: u32,
) -> Option<VmRun> {
    if let Some(why) = missing() {
        println!("skipping kernel test {test}: {why}");
        return None;
    }
    // One VM at a time: two TCG guests on a small machine would each run
    // at half speed, and the cases' timeouts are real time.
    let _one_vm = VM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache_dir();
    let kernel = match image::kernel(&cache) {
        Ok(k) => k,
        Err(e) => {
            // No apt sources or no network: say so and skip.
            println!("skipping kernel test {test}: cannot fetch the VM kernel ({e})");
            return None;
        }
    };
    let base = image::base_initramfs(&cache, &kernel).expect("building the base initramfs");
    let run_dir = cache.join(format!("run-{}-{test}", std::process::id()));
    // The running binary itself, even if a rebuild replaced its file.
    // (`/proc/PID/exe`, not `/proc/self/exe`: the tools that read it are
    // other processes.)
    let test_binary = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    let extra = image::extra_archive(
        &run_dir,
        &test_binary,
        Path::new(env!("CARGO_BIN_EXE_kpsim")),
        dirs,
        guest_script,
    )
    .expect("packing the binaries under test");
    let initrd = run_dir.join("initrd");
    let mut joined = std::fs::read(&base).expect("reading the base initramfs");
    // An uncompressed archive must start 4-byte aligned; the kernel skips
    // the zeros between archives.
    joined.resize(joined.len().next_multiple_of(512), 0);
    joined.extend(std::fs::read(&extra).expect("reading the extra archive"));
    std::fs::write(&initrd, joined).expect("writing the initrd");
    let (out, elapsed) = kpsim::kernel_apply::timed(|| {
        Command::new("timeout")
            .arg(timeout.to_string())
            .arg("qemu-system-x86_64")
            .args(["-accel", "tcg", "-nographic", "-nodefaults"])
            .args(["-m", &memory.to_string(), "-smp", &cpus.to_string()])
            .args(["-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(kernel.vmlinuz())
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 quiet panic=-1"])
            .stdin(Stdio::null())
            .output()
            .expect("starting qemu")
    });
    let _ = std::fs::remove_dir_all(&run_dir);
    Some(VmRun {
        console: String::from_utf8_lossy(&out.stdout).replace('\r', ""),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        kernel: kernel.version,
        elapsed,
    })
}

#[test]
fn ipvs_in_a_vm() {
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let Some(run) = boot(
        "ipvs_in_a_vm",
        &guest_script(),
        &[(&manifests, "manifests")],
        VM_TIMEOUT,
        1024,
        1,
    ) else {
        return;
    };
    for line in run.console.lines().filter(|l| l.starts_with("KPSIM-VM")) {
        println!("{line}");
    }
    println!(
        "ipvs vm: kernel {}, {:.1} s from boot to power-off",
        run.kernel,
        run.elapsed.as_secs_f64()
    );
    assert!(
        run.passed(),
        "the IPVS checks in the VM failed (exit {:?}); console:\n{}\n{}",
        run.exit_code(),
        run.console,
        run.stderr
    );
}

/// The guest's entry point: runs only inside the VM (`KPSIM_VM_GUEST=1`).
#[test]
fn vm_guest_entry() {
    if std::env::var_os("KPSIM_VM_GUEST").is_none() {
        return;
    }
    if let Err(failures) = guest::run() {
        for f in &failures {
            println!("KPSIM-VM-FAIL {f}");
        }
        panic!("{} IPVS check(s) failed in the VM", failures.len());
    }
}
