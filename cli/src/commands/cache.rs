//! `rbuild cache du` and `rbuild cache prune`: the build cache index's
//! disk usage and its cleanup, with `docker builder du/prune`'s flags and
//! output.
//!
//! The commands work on the [`CacheRecords`] trait; [`open`] gives the
//! store's implementation (the worker's cache index, mapped by the
//! integrator).

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use rbuild_builder::spec::parse::parse_size;
use rbuild_oci::time;
use rbuild_store::Store;
use rbuild_worker::{CacheRecordInfo, PruneOptions, StoreCacheIndex};

use super::size::human_size;
use super::table::Table;

/// One entry of the build cache index, as `du` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// Short id shown in tables (a cache key's or snapshot's hex prefix).
    pub id: String,
    /// Bytes on disk that removing the entry would free.
    pub size: u64,
    /// Unix seconds of the last use, if recorded.
    pub last_used: Option<i64>,
    /// A running build is using it: not reclaimable.
    pub in_use: bool,
    /// Shared with an image in the store (its bytes stay when removed).
    pub shared: bool,
    /// Mutable (a `RUN --mount=type=cache` directory): shown with `*`.
    pub mutable: bool,
}

/// `du`'s figures: the entries and the totals, blobs shared by several
/// entries counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheDu {
    pub records: Vec<CacheRecord>,
    /// Bytes the cache index holds on disk (cache mounts included).
    pub total: u64,
    /// Of `total`, bytes images in the store use too.
    pub shared: u64,
    /// Of `total`, bytes `cache prune` (no flags) would free.
    pub reclaimable: u64,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// The removed entries.
    pub deleted: Vec<CacheRecord>,
    /// Bytes freed on disk (not the entries' sizes summed: entries share
    /// blobs with each other and with images).
    pub reclaimed: u64,
}

/// What `prune` may remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePolicy {
    /// `-a`: also entries an image or a cache mount still uses, not only
    /// unreferenced ones.
    pub all: bool,
    /// `--filter until=…`: only entries last used before this Unix time.
    pub until: Option<i64>,
    /// `--keep-storage`: stop once the cache index holds at most this many
    /// bytes (least recently used removed first).
    pub keep_storage: Option<u64>,
}

/// The cache index as the commands see it.
pub trait CacheRecords {
    /// Every entry, and the totals.
    fn usage(&self) -> anyhow::Result<CacheDu>;
    /// Removes what `policy` allows; says what went and what it freed.
    fn prune(&self, policy: &PrunePolicy) -> anyhow::Result<PruneOutcome>;
}

/// The store's cache index (the worker's [`StoreCacheIndex`]).
pub fn open(root: &Path) -> anyhow::Result<Box<dyn CacheRecords>> {
    Ok(Box::new(StoreRecords {
        store: crate::root::open_store_saying_waits(root)?,
    }))
}

struct StoreRecords {
    store: Store,
}

fn record_of(info: &CacheRecordInfo) -> CacheRecord {
    CacheRecord {
        id: info.key.digest().hex()[..12].to_string(),
        size: info.size,
        last_used: Some(info.last_used),
        in_use: false,
        shared: info.shared,
        mutable: false,
    }
}

impl CacheRecords for StoreRecords {
    fn usage(&self) -> anyhow::Result<CacheDu> {
        let usage = StoreCacheIndex::new(&self.store).usage()?;
        Ok(CacheDu {
            records: usage.records.iter().map(record_of).collect(),
            total: usage.total + usage.cache_mounts,
            shared: usage.shared,
            reclaimable: usage.reclaimable,
        })
    }

    fn prune(&self, policy: &PrunePolicy) -> anyhow::Result<PruneOutcome> {
        let index = StoreCacheIndex::new(&self.store);
        let now = time::now_secs();
        let report = index.prune(&PruneOptions {
            all: policy.all,
            keep_storage: policy.keep_storage,
            until: policy
                .until
                .map(|t| std::time::Duration::from_secs(now.saturating_sub(t).max(0) as u64)),
        })?;
        Ok(PruneOutcome {
            deleted: report.removed.iter().map(record_of).collect(),
            reclaimed: report.bytes_reclaimed,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct DuArgs {
    /// Accepted as buildx's `du --verbose`; rbuild always lists every entry
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all unused build cache, not just dangling entries
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Filter: until=DURATION|TIMESTAMP (entries last used before)
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Amount of disk space to keep for the cache (e.g. 10gb)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub keep_storage: Option<u64>,
}

/// `rbuild cache du`.
pub fn du(root: &Path, _args: DuArgs) -> anyhow::Result<ExitCode> {
    let index = open(root)?;
    print!("{}", render_du(&index.usage()?, time::now_secs()));
    let store = crate::root::open_store(root)?;
    let orphans = store.unreferenced(&rbuild_worker::CacheIndexRoots)?;
    if orphans.bytes() > 0 {
        println!("{}", super::system::unreferenced_line(&orphans));
    }
    Ok(ExitCode::SUCCESS)
}

/// `rbuild cache prune`.
pub fn prune(root: &Path, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let policy = prune_policy(&args)?;
    if !args.force {
        let what = if args.all {
            "all build cache"
        } else {
            "all dangling build cache"
        };
        if !super::prune::confirm(what)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let index = open(root)?;
    print!("{}", render_prune(&index.prune(&policy)?));
    Ok(ExitCode::SUCCESS)
}

fn prune_policy(args: &PruneArgs) -> anyhow::Result<PrunePolicy> {
    let mut until = None;
    for f in &args.filters {
        match f.split_once('=') {
            Some(("until", v)) => match super::prune::parse_until(v) {
                Some(t) => until = Some(t),
                None => bail!(
                    "invalid value {f:?} for --filter: cannot parse {v:?} as a duration or time\nhint: e.g. until=24h"
                ),
            },
            _ => {
                bail!("invalid value {f:?} for --filter\nhint: cache prune accepts until=DURATION")
            }
        }
    }
    Ok(PrunePolicy {
        all: args.all,
        until,
        keep_storage: args.keep_storage,
    })
}

/// docker builder du's table, then the `Shared`/`Private`/`Reclaimable`/
/// `Total` lines (the first two only when something is shared). An
/// entry is reclaimable when `cache prune` would remove it.
pub fn render_du(du: &CacheDu, now: i64) -> String {
    let mut sorted: Vec<&CacheRecord> = du.records.iter().collect();
    // Most recently used last, as buildx sorts.
    sorted.sort_by_key(|r| (r.last_used.unwrap_or(i64::MIN), r.id.clone()));
    let mut out = String::new();
    if !sorted.is_empty() {
        let mut t = Table::new(&["ID", "RECLAIMABLE", "SIZE", "LAST ACCESSED"]);
        for r in &sorted {
            t.row(vec![
                if r.mutable {
                    format!("{}*", r.id)
                } else {
                    r.id.clone()
                },
                (!r.in_use && !r.shared).to_string(),
                human_size(r.size),
                match r.last_used {
                    Some(t) => format!("{} ago", time::human_duration(now - t)),
                    None => String::new(),
                },
            ]);
        }
        out.push_str(&t.render());
    }
    let (shared, total, reclaimable) = (du.shared, du.total, du.reclaimable);
    let mut summary = Table::default();
    if shared > 0 {
        summary.row(vec!["Shared:".into(), human_size(shared)]);
        summary.row(vec![
            "Private:".into(),
            human_size(total.saturating_sub(shared)),
        ]);
    }
    summary.row(vec!["Reclaimable:".into(), human_size(reclaimable)]);
    summary.row(vec!["Total:".into(), human_size(total)]);
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&summary.render());
    out
}

/// docker builder prune's output.
pub fn render_prune(outcome: &PruneOutcome) -> String {
    let mut out = String::new();
    if !outcome.deleted.is_empty() {
        out.push_str("Deleted build cache objects:\n");
        for r in &outcome.deleted {
            out.push_str(&r.id);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(outcome.reclaimed)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        id: &str,
        size: u64,
        age: i64,
        in_use: bool,
        shared: bool,
        mutable: bool,
    ) -> CacheRecord {
        CacheRecord {
            id: id.into(),
            size,
            last_used: Some(1_000_000 - age),
            in_use,
            shared,
            mutable,
        }
    }

    #[test]
    fn du_prints_dockers_table_and_the_index_figures() {
        let du = CacheDu {
            records: vec![
                rec("k2pv3pfxbd0l", 1_200_000, 30, false, false, false),
                rec("a7uu4ljn3xyd", 2_000, 3 * 86_400, true, false, true),
            ],
            total: 1_202_000,
            shared: 0,
            reclaimable: 1_200_000,
        };
        assert_eq!(
            render_du(&du, 1_000_000),
            "\
ID              RECLAIMABLE   SIZE      LAST ACCESSED
a7uu4ljn3xyd*   false         2kB       3 days ago
k2pv3pfxbd0l    true          1.2MB     30 seconds ago

Reclaimable:   1.2MB
Total:         1.2MB
"
        );
        assert_eq!(
            render_du(&CacheDu::default(), 0),
            "Reclaimable:   0B\nTotal:         0B\n"
        );
    }

    /// Regression: du summed the entries' sizes (a blob two entries share
    /// twice) and printed Reclaimable = Total.
    #[test]
    fn du_totals_come_from_the_index_not_from_summing_entries() {
        let du = CacheDu {
            // Two entries that added the same 1.5kB blob, one that shares
            // its 500B layer with an image.
            records: vec![
                rec("x", 500, 5, false, true, false),
                rec("y", 1500, 5, false, false, false),
                rec("z", 1500, 5, false, false, false),
            ],
            total: 2000,
            shared: 500,
            reclaimable: 1500,
        };
        let text = render_du(&du, 1_000_000);
        assert!(
            text.ends_with(
                "Shared:        500B\nPrivate:       1.5kB\nReclaimable:   1.5kB\nTotal:         2kB\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nx         false "),
            "prune keeps a shared entry: {text}"
        );
    }

    #[test]
    fn prune_prints_deleted_ids_and_the_bytes_freed() {
        let outcome = PruneOutcome {
            deleted: vec![
                rec("k2pv3pfxbd0l", 1_200_000, 0, false, false, false),
                rec("a7uu4ljn3xyd", 1_200_000, 0, false, false, false),
            ],
            // The two entries shared their blob: it was freed once.
            reclaimed: 1_200_000,
        };
        assert_eq!(
            render_prune(&outcome),
            "Deleted build cache objects:\nk2pv3pfxbd0l\na7uu4ljn3xyd\n\nTotal reclaimed space: 1.2MB\n"
        );
        assert_eq!(
            render_prune(&PruneOutcome::default()),
            "Total reclaimed space: 0B\n"
        );
    }

    #[test]
    fn prune_flags_become_a_policy() {
        let args = PruneArgs {
            all: true,
            force: true,
            filters: vec!["until=24h".into()],
            keep_storage: Some(10 << 30),
        };
        let p = prune_policy(&args).unwrap();
        assert!(p.all);
        assert_eq!(p.keep_storage, Some(10 << 30));
        let until = p.until.unwrap();
        assert!((time::now_secs() - 86_400 - until).abs() <= 2);
        let bad = PruneArgs {
            filters: vec!["label=x".into()],
            ..args
        };
        assert!(
            prune_policy(&bad)
                .unwrap_err()
                .to_string()
                .contains("label=x")
        );
    }
}
