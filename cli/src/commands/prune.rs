//! `rbuild image prune [-a] [-f] [--filter until=24h]`: remove dangling
//! (or, with -a, all unused) images and collect their blobs.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use rbuild_oci::time;

use super::images::created_nanos;
use super::size::human_size;

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
            Some(("until", v)) => match parse_until(v) {
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
    let store = crate::root::open_store_saying_waits(root)?;
    let mut deleted = Vec::new();
    let users = super::container::images_in_use(root);
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
        let used_by_container = users
            .iter()
            .any(|(m, _)| *m == image.manifest_digest.to_string() || *m == image.id.to_string());
        if !label_ok || used_by_container || store.is_in_use(&image)? {
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
    println!("Total reclaimed space: {}", human_size(stats.bytes_freed));
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

/// The time an `until=` filter names, in seconds since the epoch, read as
/// Docker's `filters.GetTimestamp`: a Go duration before now (`24h`,
/// `1h30m`; but `0` is the epoch), an RFC 3339 stamp, a date
/// (`2024-01-01`), or Unix seconds (a fraction dropped). Shared by `image
/// prune` and `cache prune`.
pub(crate) fn parse_until(s: &str) -> Option<i64> {
    if let Some(d) = rbuild_parser::parse_go_duration(s)
        .ok()
        .filter(|_| s != "0")
    {
        return Some(time::now_secs() - d.as_secs() as i64);
    }
    if let Some(t) = time::parse_rfc3339(s) {
        return Some(t);
    }
    if let Some(t) = time::parse_rfc3339(&format!("{s}T00:00:00Z")) {
        return Some(t);
    }
    s.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_reads_durations_stamps_dates_and_seconds() {
        let now = time::now_secs();
        assert!((now - 86_400 - parse_until("24h").unwrap()).abs() <= 2);
        assert!((now - 5_400 - parse_until("1h30m").unwrap()).abs() <= 2);
        assert_eq!(parse_until("0"), Some(0));
        assert_eq!(parse_until("5"), Some(5));
        assert_eq!(parse_until("1700000000.5"), Some(1_700_000_000));
        assert_eq!(parse_until("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_until("1970-01-02"), Some(86_400));
        assert_eq!(parse_until("x"), None);
        assert_eq!(parse_until("-1h"), None);
    }
}
