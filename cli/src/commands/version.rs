//! `rbuild version`.

use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    println!("rbuild {}", env!("CARGO_PKG_VERSION"));
    println!(
        "os/arch: {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    Ok(ExitCode::SUCCESS)
}
