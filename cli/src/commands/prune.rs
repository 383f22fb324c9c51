//! `rbuild image prune [-a] [-f] [--filter until=24h]`: remove dangling
//! (or, with -a, all unused) images and collect their blobs.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;

use super::images::created_nanos;
use super::timestamp;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove all images not in use, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Filter: until=DURATION|TIMESTAMP, label=KEY[=VALUE]
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let mut until = None;
    let mut labels = Vec::new();
    for f in &args.filters {
        match f.split_once('=') {
            Some(("until", v)) => match timestamp::parse_filter_time(v) {
                Some(t) => until = Some(t),
                None => bail!(
                    "bad filter {f:?}: cannot parse {v:?} as a duration or time\nhint: e.g. until=24h or until=2024-01-01T00:00:00Z"
                ),
            },
            Some(("label", v)) => labels.push(v.to_string()),
            _ => bail!("invalid filter {f:?}\nhint: image prune accepts until=… and label=…"),
        }
    }
    if !args.force {
        let what = if args.all {
            "all images without at least one process using them"
        } else {
            "all dangling images"
        };
        if !confirm(what)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = crate::root::open_store(root)?;
    let mut deleted = Vec::new();
    for image in store.images()? {
        if !args.all && !image.is_dangling() {
            continue;
        }
        if until.is_some_and(|t| created_nanos(&image) >= t as i128 * 1_000_000_000) {
            continue;
        }
        let image_labels = image.config.config.labels.clone().unwrap_or_default();
        let label_ok = labels.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => image_labels.get(k).map(String::as_str) == Some(v),
            None => image_labels.contains_key(l.as_str()),
        });
        if !label_ok || store.is_in_use(&image)? {
            continue;
        }
        store.remove(&image)?;
        deleted.push(image);
    }
    let stats = store.gc(&rbuild_worker::CacheIndexRoots)?;
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for image in &deleted {
            for t in &image.tags {
                println!("untagged: {}", t.familiar());
            }
            println!("deleted: {}", image.id);
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        timestamp::human_size(stats.bytes_freed)
    );
    Ok(ExitCode::SUCCESS)
}

/// docker's prune prompt on stderr: `WARNING! This will remove WHAT.` and
/// `[y/N]`; true when the answer on stdin is yes.
pub(crate) fn confirm(what: &str) -> io::Result<bool> {
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
