//! `rbuild history IMAGE`: the config's history, newest first.

use std::path::Path;
use std::process::ExitCode;

use rbuild_oci::time;

use super::size::human_size;
use super::table::Table;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (name, name:tag, or ID)
    pub image: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show sizes and dates in human-readable form (the default)
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    let image = store.resolve(&args.image)?;
    let history = &image.config.history;
    // Non-empty history entries correspond, in order, to layers.
    let mut layer_sizes = image.layers.iter().map(|l| l.size);
    let mut rows = Vec::new();
    for h in history {
        let size = if h.empty_layer {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        rows.push((h, size));
    }
    let id = if args.no_trunc {
        image.id.to_string()
    } else {
        image.id.short()
    };
    if args.quiet {
        for i in 0..rows.len() {
            println!("{}", if i == 0 { id.as_str() } else { "<missing>" });
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    for (i, (h, size)) in rows.iter().rev().enumerate() {
        let created_by = h.created_by.clone().unwrap_or_default();
        let created_by = if args.no_trunc {
            created_by
        } else {
            ellipsis(&created_by, 45)
        };
        let (created, size) = if args.human {
            (time::since(h.created.as_deref()), human_size(*size))
        } else {
            (h.created.clone().unwrap_or_default(), size.to_string())
        };
        table.row(vec![
            if i == 0 {
                id.clone()
            } else {
                "<missing>".into()
            },
            created,
            created_by,
            size,
            h.comment.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last an
/// ellipsis when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}
