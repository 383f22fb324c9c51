//! `rbuild images` / `rbuild image ls`: the images in the store, as
//! `docker images` shows them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rbuild_oci::time;
use rbuild_store::{Image, Store};
use rbuild_template::Template;
use serde_json::json;

use super::size::human_size;
use super::table::Table;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only show images whose repository matches (e.g. busybox, busybox:1.*)
    pub repository: Option<String>,
    /// Show all images (rbuild keeps no intermediate images; accepted for
    /// compatibility)
    #[arg(short, long)]
    pub all: bool,
    /// Show manifest digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter: reference=PATTERN, before=IMAGE, since=IMAGE,
    /// dangling=true|false, label=KEY[=VALUE]
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Output format: table (default), json, or a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Only images of this platform (os/arch[/variant]); a multi-platform
    /// image is shown as that platform's image
    #[arg(long, value_name = "OS/ARCH", value_parser = rbuild_builder::spec::parse::parse_platform)]
    pub platform: Option<rbuild_oci::Platform>,
}

/// One line of the listing: an image under one of its tags.
struct Row<'a> {
    image: &'a Image,
    repository: String,
    tag: String,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    let scan = store.scan_images()?;
    for broken in &scan.broken {
        let name = broken
            .tags
            .first()
            .map_or_else(|| broken.manifest.clone(), |t| t.familiar());
        eprintln!(
            "warning: skipping {name}: {}",
            broken.error.to_string().lines().next().unwrap_or_default()
        );
    }
    if !scan.broken.is_empty() {
        eprintln!("hint: run `rbuild system check --repair` to drop damaged images");
    }
    let mut images = scan.images;
    if let Some(p) = &args.platform {
        images = images
            .into_iter()
            .filter_map(|i| store.for_platform(i, p).ok())
            .collect();
    }
    images.sort_by_key(|i| std::cmp::Reverse(created_nanos(i)));
    let mut filters = args.filters.clone();
    if let Some(repo) = &args.repository {
        filters.push(format!("reference={repo}"));
    }
    let images = apply_filters(&store, images, &filters)?;
    let patterns: Vec<String> = filters
        .iter()
        .filter_map(|f| f.strip_prefix("reference=").map(str::to_string))
        .collect();

    let mut rows = Vec::new();
    for image in &images {
        // An image without tags has no reference for a pattern to match.
        if image.tags.is_empty() && patterns.is_empty() {
            rows.push(Row {
                image,
                repository: "<none>".into(),
                tag: "<none>".into(),
            });
        }
        for t in &image.tags {
            let row = Row {
                image,
                repository: t.familiar_repository(),
                tag: t.tag().unwrap_or("<none>").to_string(),
            };
            if patterns.is_empty() || patterns.iter().any(|p| reference_matches(p, &row)) {
                rows.push(row);
            }
        }
    }

    if args.quiet {
        let mut seen = Vec::new();
        for r in &rows {
            if !seen.contains(&r.image.id) {
                seen.push(r.image.id);
                println!("{}", id_text(r.image, args.no_trunc));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format.as_deref() {
        None | Some("table") => {
            let mut header = vec!["REPOSITORY", "TAG"];
            if args.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let mut table = Table::new(&header);
            for r in &rows {
                let mut cells = vec![r.repository.clone(), r.tag.clone()];
                if args.digests {
                    cells.push(r.image.manifest_digest.to_string());
                }
                cells.extend([
                    id_text(r.image, args.no_trunc),
                    time::since(r.image.created()),
                    human_size(r.image.size()),
                ]);
                table.row(cells);
            }
            print!("{}", table.render());
        }
        Some("json") => {
            for r in &rows {
                println!("{}", serde_json::to_string(&row_json(r, args.no_trunc))?);
            }
        }
        Some(t) => {
            let t = Template::parse(t.strip_prefix("table ").unwrap_or(t))?;
            for r in &rows {
                println!("{}", t.render(&row_json(r, args.no_trunc))?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn id_text(image: &Image, no_trunc: bool) -> String {
    if no_trunc {
        image.id.to_string()
    } else {
        image.id.short()
    }
}

fn row_json(r: &Row<'_>, no_trunc: bool) -> serde_json::Value {
    json!({
        "Containers": "N/A",
        "CreatedAt": r.image.created().unwrap_or_default(),
        "CreatedSince": time::since(r.image.created()),
        "Digest": r.image.manifest_digest.to_string(),
        "ID": id_text(r.image, no_trunc),
        "Repository": r.repository,
        "SharedSize": "N/A",
        "Size": human_size(r.image.size()),
        "Tag": r.tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(r.image.size()),
    })
}

/// The image's creation time in nanoseconds since the epoch (0 when
/// unknown): images made within one second still order correctly.
pub fn created_nanos(image: &Image) -> i128 {
    image
        .created()
        .and_then(time::parse_rfc3339_nanos)
        .unwrap_or(0)
}

fn apply_filters(
    store: &Store,
    images: Vec<Image>,
    filters: &[String],
) -> anyhow::Result<Vec<Image>> {
    let mut out = images;
    for f in filters {
        let Some((key, value)) = f.split_once('=') else {
            bail!(
                "bad filter {f:?}: expected KEY=VALUE\nhint: keys are reference, before, since, dangling, label"
            );
        };
        match key {
            "reference" => {}
            "dangling" => {
                let want = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("bad filter {f:?}: dangling takes true or false"),
                };
                out.retain(|i| i.is_dangling() == want);
            }
            "before" | "since" => {
                let pivot = store
                    .resolve(value)
                    .with_context(|| format!("bad filter {f:?}"))?;
                let t = created_nanos(&pivot);
                if key == "before" {
                    out.retain(|i| created_nanos(i) < t);
                } else {
                    out.retain(|i| created_nanos(i) > t);
                }
            }
            "label" => {
                let (k, v) = match value.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (value, None),
                };
                out.retain(|i| {
                    let labels = i.config.config.labels.clone();
                    labels.is_some_and(|l| match v {
                        Some(v) => l.get(k).map(String::as_str) == Some(v),
                        None => l.contains_key(k),
                    })
                });
            }
            other => bail!(
                "invalid filter {other:?}\nhint: keys are reference, before, since, dangling, label"
            ),
        }
    }
    Ok(out)
}

/// Docker's reference filter: a glob over `repo` or `repo:tag` (familiar).
fn reference_matches(pattern: &str, row: &Row<'_>) -> bool {
    glob(pattern, &row.repository) || glob(pattern, &format!("{}:{}", row.repository, row.tag))
}

/// `path.Match`-style glob: `*` and `?` do not cross `/`.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(&p[1..], &t[i..])),
            Some(b'?') => !t.is_empty() && t[0] != b'/' && go(&p[1..], &t[1..]),
            Some(&c) => t.first() == Some(&c) && go(&p[1..], &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_is_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:1.*", "busybox:1.36"));
        assert!(!glob("*", "library/busybox"));
        assert!(glob("*/*", "user/app"));
        assert!(glob("b?sybox", "busybox"));
    }
}
