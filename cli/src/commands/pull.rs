//! `rbuild pull IMAGE[:TAG|@DIGEST]`: an image from its registry into the
//! store, with docker's output (progress bars on a terminal, one line per
//! event otherwise).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_oci::reference::ImageRef;
use rbuild_registry as registry;
use rbuild_registry::{Client, ClientOptions, PullEvent, PullProgress};
use rbuild_solver::Digest;
use rbuild_solver::plan::Platform;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: NAME[:TAG|@DIGEST]
    pub image: String,
    /// Suppress the progress output
    #[arg(short, long)]
    pub quiet: bool,
    /// Reach this registry (HOST[:PORT]) over plain HTTP; repeatable (also
    /// RBUILD_INSECURE_REGISTRIES, comma-separated, and "insecure-registries"
    /// in rbuild's config.json)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Platform (os/arch[/variant]): of a multi-platform image, that platform's image
    #[arg(long, value_name = "OS/ARCH", value_parser = rbuild_builder::spec::parse::parse_platform)]
    pub platform: Option<rbuild_oci::Platform>,
}

/// A registry client for the CLI: the environment's options, rbuild's
/// config files for the store at `root` (none when no root could be
/// determined, e.g. without HOME), plus the registries named with
/// `--insecure-registry`.
pub fn client(root: Option<&Path>, insecure: &[String]) -> anyhow::Result<Client> {
    let mut options = match root {
        Some(root) => ClientOptions::load(root)?,
        None => ClientOptions::from_env(),
    };
    options.insecure_registries.extend(insecure.iter().cloned());
    let client = Client::new(options);
    // Retries are said, not silent: a slow pull shows why it is slow.
    client.on_retry(|n| {
        eprintln!(
            "retrying {} {} in {:.2}s (retry {} of {}): {}",
            n.method,
            n.url,
            n.delay.as_secs_f64(),
            n.attempt,
            n.of,
            n.reason
        );
    });
    Ok(client)
}

/// Whether `image` as written names a tag or digest: a `:` in its last
/// path component (one before it is a registry's port), or an `@`.
fn names_tag_or_digest(image: &str) -> bool {
    image.contains('@')
        || image
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let reference = ImageRef::parse(&args.image)?;
    let store = crate::root::open_store_saying_waits(root)?;
    let client = client(Some(root), &args.insecure_registries)?;
    let pulled_from = reference.familiar_repository();
    let what = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, t) => t.unwrap_or("latest").to_string(),
    };
    if !args.quiet {
        if !names_tag_or_digest(&args.image) {
            println!("Using default tag: latest");
        }
        println!("{what}: Pulling from {}", reference.path());
    }
    let progress = Printer::new(args.quiet);
    let outcome = registry::pull(
        &store,
        &client,
        &reference,
        &args.platform.clone().unwrap_or_else(Platform::host),
        &progress,
    )
    .with_context(|| format!("cannot pull {}", reference.familiar()))?;
    progress.finish();
    if !args.quiet {
        println!("Digest: {}", outcome.reference_digest);
        let name = if reference.digest().is_some() {
            format!("{pulled_from}@{}", outcome.reference_digest)
        } else {
            reference.familiar()
        };
        if outcome.up_to_date && outcome.downloaded == 0 {
            println!("Status: Image is up to date for {name}");
        } else {
            println!("Status: Downloaded newer image for {name}");
        }
    }
    println!("{reference}");
    // docker's `pull` event: actor and `name=` the familiar reference.
    let name = reference.familiar();
    rbuild_container::events::record(root, "image", "pull", &name, &[("name", &name)]);
    Ok(ExitCode::SUCCESS)
}

/// Docker's 12-hex short form of a blob digest.
pub fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

/// Renders pull events: a bar per layer on a terminal, lines otherwise.
pub struct Printer {
    quiet: bool,
    bars: Option<(MultiProgress, Mutex<HashMap<Digest, ProgressBar>>)>,
}

impl Printer {
    pub fn new(quiet: bool) -> Printer {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        Printer { quiet, bars }
    }

    /// Clears the bars (their final lines stay).
    pub fn finish(&self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

impl PullProgress for Printer {
    fn event(&self, event: PullEvent<'_>) {
        if self.quiet {
            return;
        }
        match (&self.bars, event) {
            (
                _,
                PullEvent::Resolved { .. } | PullEvent::Started { .. } | PullEvent::Finished { .. },
            ) => {}
            (None, PullEvent::Blob { layer: false, .. }) => {}
            (None, PullEvent::Blob { digest, exists, .. }) => {
                let status = if exists {
                    "Already exists"
                } else {
                    "Pulling fs layer"
                };
                println!("{}: {status}", short(digest));
            }
            (None, PullEvent::Progress { .. }) => {}
            (None, PullEvent::Stored { digest }) => {
                println!("{}: Pull complete", short(digest));
            }
            (
                Some((multi, bars)),
                PullEvent::Blob {
                    digest,
                    size,
                    exists,
                    layer,
                },
            ) => {
                if !layer {
                    return;
                }
                let bar = multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(short(digest));
                if exists {
                    bar.finish_with_message("Already exists");
                } else {
                    bar.set_message("Downloading");
                    bars.lock().expect("bars").insert(*digest, bar);
                }
            }
            (Some((_, bars)), PullEvent::Progress { digest, bytes }) => {
                if let Some(bar) = bars.lock().expect("bars").get(digest) {
                    bar.inc(bytes);
                }
            }
            (Some((_, bars)), PullEvent::Stored { digest }) => {
                if let Some(bar) = bars.lock().expect("bars").get(digest) {
                    bar.finish_with_message("Pull complete");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::names_tag_or_digest;

    #[test]
    fn a_registry_port_is_not_a_tag() {
        // Regression: `pull 127.0.0.1:5000/app` did not say it used
        // the default tag.
        assert!(!names_tag_or_digest("127.0.0.1:5000/app"));
        assert!(!names_tag_or_digest("busybox"));
        assert!(names_tag_or_digest("127.0.0.1:5000/app:1"));
        assert!(names_tag_or_digest("busybox:1.36"));
        assert!(names_tag_or_digest("busybox@sha256:abc"));
    }
}
