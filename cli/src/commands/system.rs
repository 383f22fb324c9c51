//! `rbuild system df [-v]` and `rbuild system check [--repair]`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use rbuild_oci::time;

use super::size::human_size;
use super::table::Table;

#[derive(Debug, clap::Args)]
pub struct DfArgs {
    /// Show per-image usage
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Drop broken blobs and the images that need them
    #[arg(long)]
    pub repair: bool,
}

pub fn df(root: &Path, args: DfArgs) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    let images = store.images()?;
    let du = store.disk_usage()?;
    // How many images use each blob: shared blobs count once.
    let mut users: BTreeMap<_, usize> = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for i in &images {
        for l in &i.layers {
            *users.entry(l.digest).or_default() += 1;
            sizes.insert(l.digest, l.size);
        }
    }
    let total: u64 = sizes.values().sum();
    let mut active = 0;
    let mut active_bytes = 0u64;
    let mut active_blobs = BTreeMap::new();
    for i in &images {
        if store.is_in_use(i)? {
            active += 1;
            for l in &i.layers {
                active_blobs.insert(l.digest, l.size);
            }
        }
    }
    active_bytes += active_blobs.values().sum::<u64>();
    let reclaimable = total.saturating_sub(active_bytes);
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let mut t = Table::new(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    t.row(vec![
        "Images".into(),
        images.len().to_string(),
        active.to_string(),
        human_size(total),
        format!("{} ({}%)", human_size(reclaimable), pct(reclaimable, total)),
    ]);
    t.row(vec![
        "Snapshots".into(),
        du.snapshot_count.to_string(),
        "0".into(),
        human_size(du.snapshots),
        format!("{} (100%)", human_size(du.snapshots)),
    ]);
    // Containers (their writable layers) and volumes, as docker counts them.
    if let Ok(list) = rbuild_container::Containers::open(root).and_then(|c| c.list()) {
        let size = |c: &rbuild_container::Container| rbuild_store::tree_size(&c.upper());
        let total: u64 = list.iter().map(size).sum();
        let running: Vec<_> = list.iter().filter(|c| c.is_active()).collect();
        let reclaim: u64 = list.iter().filter(|c| !c.is_active()).map(size).sum();
        t.row(vec![
            "Containers".into(),
            list.len().to_string(),
            running.len().to_string(),
            human_size(total),
            format!("{} ({}%)", human_size(reclaim), pct(reclaim, total)),
        ]);
    }
    if let Ok(vols) = rbuild_container::volume::list(root) {
        let mut total = 0;
        let mut reclaim = 0;
        let mut active = 0;
        for v in &vols {
            let n = rbuild_container::volume::size(v);
            total += n;
            if rbuild_container::volume::users(root, &v.name)
                .map(|u| u.is_empty())
                .unwrap_or(false)
            {
                reclaim += n;
            } else {
                active += 1;
            }
        }
        t.row(vec![
            "Local Volumes".into(),
            vols.len().to_string(),
            active.to_string(),
            human_size(total),
            format!("{} ({}%)", human_size(reclaim), pct(reclaim, total)),
        ]);
    }
    // Blobs nothing references (a killed or failed write left them) and
    // dead processes' scratch: on disk, in no other row, freed by prune.
    let orphans = store.unreferenced(&rbuild_worker::CacheIndexRoots)?;
    t.row(vec![
        "Unreferenced".into(),
        orphans.blobs.to_string(),
        "0".into(),
        human_size(orphans.bytes()),
        format!("{} (100%)", human_size(orphans.bytes())),
    ]);
    if args.verbose {
        println!("Images space usage:\n");
        let mut v = Table::new(&[
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS",
        ]);
        for i in &images {
            let shared: u64 = i
                .layers
                .iter()
                .filter(|l| users[&l.digest] > 1)
                .map(|l| l.size)
                .sum();
            let names: Vec<(String, String)> = if i.tags.is_empty() {
                vec![("<none>".into(), "<none>".into())]
            } else {
                i.tags
                    .iter()
                    .map(|t| {
                        (
                            t.familiar_repository(),
                            t.tag().unwrap_or("<none>").to_string(),
                        )
                    })
                    .collect()
            };
            for (repo, tag) in names {
                v.row(vec![
                    repo,
                    tag,
                    i.id.short(),
                    time::since(i.created()),
                    human_size(i.size()),
                    human_size(shared),
                    human_size(i.size() - shared),
                    "0".into(),
                ]);
            }
        }
        print!("{}", v.render());
        println!(
            "\nStore: {} in {} blobs, {} in {} snapshots",
            human_size(du.blobs),
            du.blob_count,
            human_size(du.snapshots),
            du.snapshot_count
        );
    } else {
        print!("{}", t.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// One line about blobs nothing references and dead processes' scratch.
pub(crate) fn unreferenced_line(o: &rbuild_store::Unreferenced) -> String {
    format!(
        "unreferenced: {} in {} blob{} no image or build cache record uses{} (left by a killed or failed write); `rbuild image prune`, `rbuild cache prune` or `rbuild system check --repair` removes them",
        human_size(o.bytes()),
        o.blobs,
        if o.blobs == 1 { "" } else { "s" },
        if o.scratch_bytes > 0 {
            format!(
                ", with {} of dead processes' scratch",
                human_size(o.scratch_bytes)
            )
        } else {
            String::new()
        }
    )
}

pub fn check(root: &Path, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store_saying_waits(root)?;
    let mut report = store.check(args.repair, &rbuild_worker::CacheIndexRoots)?;
    // After the store's repair: a record naming a blob it dropped goes too.
    let records = rbuild_worker::check_records(&store, args.repair)?;
    for r in &records {
        report.problems.push(rbuild_store::Problem {
            subject: format!("build cache record {}", r.path.display()),
            reason: r.reason.clone(),
        });
        if args.repair {
            report
                .repaired
                .push(format!("removed build cache record {}", r.path.display()));
        }
    }
    // Container directories a killed `create` left without a config.
    if let Ok(containers) = rbuild_container::Containers::open(root) {
        for dir in containers.broken() {
            report.problems.push(rbuild_store::Problem {
                subject: format!("container {}", dir.display()),
                reason: "no readable config (a create that did not finish)".into(),
            });
            if args.repair && rbuild_container::remove_tree(&dir).is_ok() {
                report
                    .repaired
                    .push(format!("removed container {}", dir.display()));
            }
        }
    }
    for p in &report.problems {
        println!("{}: {}", p.subject, p.reason);
    }
    for r in &report.repaired {
        println!("repaired: {r}");
    }
    let stale_left = sweep_runtime_dir() + sweep_network();
    let problems = report.problems.len() + stale_left;
    let orphans = &report.unreferenced;
    if orphans.bytes() > 0 && !args.repair {
        println!("{}", unreferenced_line(orphans));
    }
    println!(
        "checked {} blobs and {} index entries: {} problem{}",
        report.blobs_checked,
        report.images_checked,
        problems,
        if problems == 1 { "" } else { "s" }
    );
    if problems == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    if args.repair {
        let after = store.check(false, &rbuild_worker::CacheIndexRoots)?;
        let stale = sweep_runtime_dir();
        let broken = rbuild_container::Containers::open(root)
            .map(|c| c.broken().len())
            .unwrap_or(0);
        if after.problems.is_empty()
            && stale == 0
            && broken == 0
            && rbuild_worker::check_records(&store, false)?.is_empty()
        {
            println!("store repaired");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "error: {} problems remain after repair",
            after.problems.len() + stale
        );
    } else {
        eprintln!("hint: run `rbuild system check --repair` to drop what is broken");
    }
    Ok(ExitCode::from(1))
}

/// Removes the network state of containers whose holder was killed
/// (veths, namespace files, leases, unused bridges, the nftables table),
/// saying what went. Returns how many could not be removed.
fn sweep_network() -> usize {
    match rbuild_net::sweep() {
        Ok(report) => {
            let mut left = 0;
            for line in report {
                if line.starts_with("cannot") {
                    left += 1;
                }
                println!("{line}");
            }
            left
        }
        Err(e) => {
            println!("network state cannot be checked: {e}");
            1
        }
    }
}

/// Removes the entries of this user's sandbox runtime dir (e.g.
/// `/dev/shm/rbuild-0`) that processes now gone left behind, such as the
/// per-run dirs of a killed build (older versions kept secrets there),
/// saying so: safe whatever else runs, since a live process's entry is
/// never taken (as the store's check sweeps dead sessions' scratch).
/// Returns how many could not be removed (problems).
fn sweep_runtime_dir() -> usize {
    let mut left = 0;
    for dir in rbuild_sandbox::stale_dirs(&rbuild_sandbox::runtime_dir()) {
        match rbuild_sandbox::remove_stale(&dir) {
            Ok(()) => println!(
                "removed {}: scratch dir of process {}, which is gone",
                dir.path.display(),
                dir.pid
            ),
            Err(e) => {
                println!(
                    "{}: scratch dir of process {}, which is gone, cannot be removed: {e}",
                    dir.path.display(),
                    dir.pid
                );
                left += 1;
            }
        }
    }
    left
}
