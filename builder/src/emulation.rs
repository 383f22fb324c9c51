//! Running steps of a foreign architecture: qemu-user through the
//! kernel's binfmt_misc. A RUN step of a `linux/arm64` stage on an amd64
//! host executes arm64 binaries; the kernel hands each one to the
//! interpreter registered for its ELF header. Registered with the `F`
//! (fix binary) flag, the interpreter is opened once at registration, so
//! it works inside the sandbox's root where no qemu binary exists; that
//! is what Debian's `qemu-user-static` registers. Nothing in the sandbox
//! changes: this module only finds out, before a build starts, whether
//! each platform it needs can run (`rbuild info` lists what it finds).

use std::path::{Path, PathBuf};

use rbuild_oci::Platform;

/// Where the kernel lists binfmt_misc handlers.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// The Debian package that registers the emulators.
pub const EMULATOR_PACKAGE: &str = "qemu-user-static";

/// One registered emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// The platform it runs (`linux/arm64`).
    pub platform: Platform,
    /// The binfmt_misc entry name (`qemu-aarch64`).
    pub name: String,
    /// The interpreter the kernel runs.
    pub interpreter: PathBuf,
    /// Enabled and registered with the `F` flag: usable from a sandbox.
    pub usable: bool,
    /// Why not, when not.
    pub problem: Option<String>,
}

/// Why a platform cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--platform {platform}: no emulator for {platform} is registered in {BINFMT_MISC}{detail}\nhint: install {EMULATOR_PACKAGE} (apt-get install {EMULATOR_PACKAGE}), which registers qemu-{qemu} with binfmt_misc; `rbuild info` lists the emulators found"
)]
pub struct NoEmulator {
    pub platform: Platform,
    pub qemu: String,
    /// What was found instead (` (qemu-aarch64 is disabled)`), or empty.
    pub detail: String,
}

/// qemu's name for a platform's architecture (`arm64` → `aarch64`).
pub fn qemu_arch(p: &Platform) -> String {
    match p.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "arm" => "arm",
        "mips64le" => "mips64el",
        "mipsle" => "mipsel",
        "loong64" => "loongarch64",
        other => other,
    }
    .to_string()
}

/// Whether `p` runs natively on `host` (same OS and architecture, or an
/// architecture the host's CPU runs: 386 on amd64, arm on arm64).
pub fn is_native(p: &Platform, host: &Platform) -> bool {
    p.os == host.os
        && (p.architecture == host.architecture
            || matches!(
                (host.architecture.as_str(), p.architecture.as_str()),
                ("amd64", "386") | ("arm64", "arm")
            ))
}

/// Every qemu emulator registered in binfmt_misc under `dir`.
pub fn emulators_in(dir: &Path) -> Vec<Emulator> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(arch) = name.strip_prefix("qemu-") else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let enabled = text.lines().next() == Some("enabled");
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let flags = field("flags:").unwrap_or_default();
        let interpreter = PathBuf::from(field("interpreter").unwrap_or_default());
        let problem = if !enabled {
            Some(format!("{name} is disabled"))
        } else if !flags.contains('F') {
            Some(format!(
                "{name} is registered without the F flag, so sandboxes cannot reach {}",
                interpreter.display()
            ))
        } else {
            None
        };
        let Some(platform) = platform_of_qemu(arch) else {
            continue;
        };
        out.push(Emulator {
            platform,
            name,
            interpreter,
            usable: problem.is_none(),
            problem,
        });
    }
    out.sort_by(|a, b| a.platform.cmp(&b.platform));
    out
}

/// The emulators registered on this machine.
pub fn emulators() -> Vec<Emulator> {
    emulators_in(Path::new(BINFMT_MISC))
}

fn platform_of_qemu(arch: &str) -> Option<Platform> {
    let (architecture, variant) = match arch {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "i386" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "ppc64le" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        "mips64el" => ("mips64le", None),
        "mipsel" => ("mipsle", None),
        "mips64" => ("mips64", None),
        "mips" => ("mips", None),
        "loongarch64" => ("loong64", None),
        _ => return None,
    };
    Some(Platform {
        os: "linux".to_string(),
        architecture: architecture.to_string(),
        variant: variant.map(str::to_string),
    })
}

/// Checks that steps of `platform` can run on `host` given the
/// registered `emulators`: natively, or through a usable emulator.
pub fn check_platform(
    platform: &Platform,
    host: &Platform,
    emulators: &[Emulator],
) -> Result<(), NoEmulator> {
    if is_native(platform, host) {
        return Ok(());
    }
    let qemu = qemu_arch(platform);
    let found = emulators
        .iter()
        .find(|e| e.platform.architecture == platform.architecture && e.platform.os == platform.os);
    match found {
        Some(e) if e.usable => Ok(()),
        Some(e) => Err(NoEmulator {
            platform: platform.clone(),
            qemu,
            detail: format!(" ({})", e.problem.clone().unwrap_or_default()),
        }),
        None => Err(NoEmulator {
            platform: platform.clone(),
            qemu,
            detail: String::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plat(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn reads_binfmt_entries_and_needs_the_f_flag() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |name: &str, state: &str, flags: &str| {
            std::fs::write(
                dir.path().join(name),
                format!(
                    "{state}\ninterpreter /usr/libexec/qemu-binfmt/x\nflags: {flags}\noffset 0\n"
                ),
            )
            .unwrap();
        };
        entry("qemu-aarch64", "enabled", "PF");
        entry("qemu-s390x", "enabled", "P");
        entry("qemu-riscv64", "disabled", "F");
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        let found = emulators_in(dir.path());
        assert_eq!(found.len(), 3);
        let host = plat("linux/amd64");
        assert!(check_platform(&plat("linux/arm64"), &host, &found).is_ok());
        assert!(check_platform(&plat("linux/386"), &host, &found).is_ok());
        let e = check_platform(&plat("linux/s390x"), &host, &found).unwrap_err();
        assert!(e.to_string().contains("without the F flag"), "{e}");
        let e = check_platform(&plat("linux/ppc64le"), &host, &found).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("--platform linux/ppc64le") && text.contains("qemu-user-static"),
            "{text}"
        );
        assert!(check_platform(&plat("linux/riscv64"), &host, &found).is_err());
    }
}
