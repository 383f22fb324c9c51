//! `rbuild info`: where the store is and what is in it.

use std::path::Path;
use std::process::ExitCode;

use rbuild_registry::{ClientOptions, ConfigFile};
use rbuild_sandbox as sandbox;
use rbuild_store::STORE_VERSION;

pub fn run(root: &Path) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    let images = store.images()?;
    let du = store.disk_usage()?;
    println!("Root Dir: {}", root.display());
    println!(
        "Store: {} (OCI image layout, version {STORE_VERSION})",
        store.dir().display()
    );
    println!("Images: {}", images.len());
    println!(
        "Blobs: {} ({})",
        du.blob_count,
        super::size::human_size(du.blobs)
    );
    println!("Snapshots: {}", du.snapshot_count);
    // What a sandbox would use; it falls back to copying by itself when an
    // overlay mount is refused (some nested setups and filesystems).
    println!("Snapshotter: {}", sandbox::snapshotter_kind());
    let cgroup = match sandbox::cgroup_version() {
        sandbox::CgroupVersion::V1 => "1",
        sandbox::CgroupVersion::V2 => "2",
    };
    println!("Cgroup Version: {cgroup}");
    println!("Architecture: {}", rbuild_store::archive::host_arch());
    println!("OS: {}", std::env::consts::OS);
    // What `--platform` can build and run besides the host's (binfmt_misc).
    println!("Emulators:");
    let emulators = rbuild_builder::emulation::emulators();
    if emulators.is_empty() {
        println!(
            " none registered in {} (apt-get install {})",
            rbuild_builder::emulation::BINFMT_MISC,
            rbuild_builder::emulation::EMULATOR_PACKAGE
        );
    }
    for e in &emulators {
        match &e.problem {
            None => println!(" {} ({}, {})", e.platform, e.name, e.interpreter.display()),
            Some(why) => println!(" {} ({}, unusable: {why})", e.platform, e.name),
        }
    }
    // rbuild's config files: the ones read, then what they and the
    // environment make of registries (docker info's "Insecure Registries").
    println!("Config Files:");
    for path in ConfigFile::locations(root) {
        let state = match ConfigFile::load(&path)? {
            Some(_) => "",
            None => " (not present)",
        };
        println!(" {}{state}", path.display());
    }
    let options = ClientOptions::load(root)?;
    println!("Insecure Registries:");
    println!(" localhost, 127.0.0.0/8, ::1");
    for r in &options.insecure_registries {
        println!(" {r}");
    }
    Ok(ExitCode::SUCCESS)
}
