//! `--platform a,b,…`: one build per platform, run at once and sharing
//! one [`StepGate`] (so a stage they share — `FROM --platform=$BUILDPLATFORM`,
//! whose steps have the same cache keys for every target platform —
//! executes once, the others waiting for its result), then one image
//! index over their images ([`crate::index`]) for the store, the
//! archives and the pushes.
//!
//! Progress: each platform's steps are prefixed with it, as BuildKit
//! shows them (`[linux/arm64 2/3] RUN …`), with vertex ids moved into a
//! range per platform; one summary at the end.
//!
//! Before anything runs, every platform whose RUN steps would execute
//! needs to run here: natively or through a registered emulator
//! ([`crate::emulation`]).

use std::sync::Mutex;

use rbuild_oci::Platform;
use rbuild_oci::reference::ImageRef;
use rbuild_registry::Client;
use rbuild_store::archive::{self, ArchiveFormat, ManifestDescription};
use rbuild_store::{Image, Store};

use crate::emulation::{self, NoEmulator};
use crate::error::BuildError;
use crate::events::{BuildEvents, Event, PULL_STEP_BASE, Summary, VertexId};
use crate::export::{ExportedManifest, annotations_of, exported_index, push_converted_index};
use crate::gate::StepGate;
use crate::index::{ConvertedIndex, IndexParts, PlatformImage, convert_and_assemble};
use crate::request::{BuildOptions, BuildRequest};
use crate::spec::{AnnotationKind, ImageFormat, OutputSpec};
use crate::{BuildReport, BuildResult};

/// The platforms whose RUN steps this Dockerfile executes, for the
/// target platforms `targets`: a stage runs on its `FROM --platform`
/// (`$BUILDPLATFORM` is the host), else on the target platform.
/// Approximate by design (no ARG expansion beyond the platform args):
/// it only decides which emulators must be there before the build.
pub fn platforms_running_steps(dockerfile: &[u8], targets: &[Platform]) -> Vec<Platform> {
    let Ok(df) = rbuild_parser::parse(dockerfile) else {
        return Vec::new();
    };
    let host = Platform::host();
    let mut out: Vec<Platform> = Vec::new();
    for target in targets {
        for stage in &df.stages {
            let runs = stage
                .instructions
                .iter()
                .any(|i| matches!(i.kind, rbuild_parser::InstructionKind::Run { .. }));
            if !runs {
                continue;
            }
            let p = match stage.platform.as_deref() {
                None => target.clone(),
                Some(t) if t.contains("BUILDPLATFORM") || t.contains("BUILDARCH") => host.clone(),
                Some(t) if t.contains('$') => target.clone(),
                Some(t) => Platform::parse(t).unwrap_or_else(|| target.clone()),
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Fails with the first platform that cannot run here.
pub(crate) fn check_emulators(request: &BuildRequest) -> Result<(), NoEmulator> {
    let targets = if request.platforms.is_empty() {
        vec![request.plan.platform.clone().unwrap_or_else(Platform::host)]
    } else {
        request.platforms.clone()
    };
    let host = Platform::host();
    let needed = platforms_running_steps(&request.dockerfile.bytes, &targets);
    if needed.iter().all(|p| emulation::is_native(p, &host)) {
        return Ok(());
    }
    let found = emulation::emulators();
    for p in &needed {
        emulation::check_platform(p, &host, &found)?;
    }
    Ok(())
}

/// Builds every platform of `request.platforms` and exports the index.
pub(crate) fn build(
    store: &Store,
    request: &BuildRequest,
    options: &BuildOptions<'_>,
    gate: &StepGate,
) -> Result<BuildResult, BuildError> {
    if request
        .outputs
        .iter()
        .any(|o| matches!(o, OutputSpec::Tar { .. }))
    {
        return Err(BuildError::MultiPlatformOutput { output: "tar" });
    }
    let started = std::time::Instant::now();
    let summaries: Mutex<Vec<(usize, Summary)>> = Mutex::new(Vec::new());
    let results: Vec<Result<crate::solve::Solved, BuildError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = request
            .platforms
            .iter()
            .enumerate()
            .map(|(i, platform)| {
                let mut sub = request.clone();
                sub.plan.platform = Some(platform.clone());
                sub.platforms = Vec::new();
                sub.tags = Vec::new();
                sub.outputs = Vec::new();
                sub.push = false;
                // One cache export (the first platform's): several
                // writers to one destination would race.
                if i > 0 {
                    sub.cache_to = Vec::new();
                }
                let summaries = &summaries;
                scope.spawn(move || {
                    let events = PlatformEvents {
                        inner: options.events,
                        platform: platform.to_string(),
                        index: i,
                        summaries,
                    };
                    let sub_options = BuildOptions {
                        events: &events,
                        ..*options
                    };
                    crate::solve::run(store, &sub, &sub_options, gate)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a platform's build thread panicked"))
            .collect()
    });
    let mut solved = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(s) => solved.push(s),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let summaries = summaries.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = first_error {
        let mut merged = merge(&summaries, started.elapsed());
        merged.image_id = None;
        options.events.event(&Event::Summary(&merged));
        return Err(e);
    }
    let images: Vec<(Platform, Image)> = request
        .platforms
        .iter()
        .cloned()
        .zip(solved.iter().map(|s| s.image.clone()))
        .collect();
    let client = solved[0].client.clone();
    let names = output_names(request);
    // Per platform, what its attestations state (provenance from its own
    // solve, the SBOM from its own filesystem).
    let mut platforms = Vec::new();
    for ((platform, image), s) in images.iter().zip(&solved) {
        platforms.push(PlatformImage {
            platform: platform.clone(),
            image: image.clone(),
            predicates: crate::export::attestation_predicates(
                store, request, &s.image, &names, &s.capture,
            )?,
        });
    }
    let exported = export_index(store, request, &platforms, &client, options)?;
    let mut merged = merge(&summaries, started.elapsed());
    merged.image_id = Some(exported.stored.index.digest.to_string());
    merged.tags = exported.names.iter().map(|t| t.to_string()).collect();
    options.events.event(&Event::Summary(&merged));
    let mut image = exported.stored.images[0].clone();
    image.index = Some(exported.stored.index.clone());
    image.tags = exported.names.clone();
    let mut report: Option<BuildReport> = None;
    for s in solved {
        match &mut report {
            None => report = Some(s.report),
            Some(r) => {
                r.steps.extend(s.report.steps);
                r.totals = crate::report::Totals::of(&r.steps);
            }
        }
    }
    Ok(BuildResult {
        image,
        report: report.expect("at least two platforms"),
        names: exported.names,
        // `containerimage.digest` is the index's, as buildx reports it.
        manifest: exported
            .manifest
            .or_else(|| Some(exported_index(&exported.stored.index))),
    })
}

/// One summary for all platforms: steps and counts added up.
fn merge(summaries: &[(usize, Summary)], duration: std::time::Duration) -> Summary {
    let mut sorted: Vec<&(usize, Summary)> = summaries.iter().collect();
    sorted.sort_by_key(|(i, _)| *i);
    let mut out = Summary {
        steps: 0,
        cached: 0,
        executed: 0,
        duration,
        image_id: None,
        tags: Vec::new(),
        cancelled: false,
        slowest: Vec::new(),
    };
    for (_, s) in sorted {
        out.steps += s.steps;
        out.cached += s.cached;
        out.executed += s.executed;
        out.cancelled |= s.cancelled;
        out.slowest.extend(s.slowest.iter().cloned());
    }
    out.slowest
        .sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    out.slowest.truncate(3);
    out
}

struct ExportedIndex {
    names: Vec<ImageRef>,
    /// The index the store keeps (stored manifests, or the image
    /// output's format).
    stored: ConvertedIndex,
    manifest: Option<ExportedManifest>,
}

/// The index for the store (tagged with every name), each archive, and
/// each push.
/// The names the build's image goes by: `-t` and the image outputs'.
fn output_names(request: &BuildRequest) -> Vec<ImageRef> {
    let mut names = request.tags.clone();
    for out in &request.outputs {
        if let OutputSpec::Image { names: extra, .. } = out {
            names.extend(extra.iter().cloned());
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_string()));
    names
}

fn export_index(
    store: &Store,
    request: &BuildRequest,
    platforms: &[PlatformImage],
    client: &Client,
    options: &BuildOptions<'_>,
) -> Result<ExportedIndex, BuildError> {
    let names = output_names(request);
    let annotations = &request.annotations;
    // What an output with `format` (and `inline`, its attestation-inline
    // default) writes: each platform with the predicates it attaches,
    // the manifests' format and descriptor annotations (OCI whenever
    // something is attested, as BuildKit), the index's annotations.
    let plan = |format: &ImageFormat, oci_default: bool, inline: bool| {
        let inline = format.attestation_inline.unwrap_or(inline);
        let with: Vec<PlatformImage> = platforms
            .iter()
            .map(|p| PlatformImage {
                predicates: crate::export::attached(&p.predicates, inline),
                ..p.clone()
            })
            .collect();
        let attesting = with.iter().any(|p| !p.predicates.is_empty());
        let mut format = format.clone();
        if attesting {
            format.oci_media_types = Some(true);
        }
        let index_annotations = annotations_of(AnnotationKind::Index, annotations, &format);
        (with, format, oci_default, index_annotations)
    };
    let image_format = request
        .outputs
        .iter()
        .find_map(|o| match o {
            OutputSpec::Image { format, .. } => Some(format.clone()),
            _ => None,
        })
        .unwrap_or_default();
    // The store keeps the manifests as built (OCI, layers as stored)
    // unless the image output asks for annotations, and no default
    // (`inline-only`) provenance, as for one platform (export.rs).
    let (with, format, _, index_annotations) = plan(&image_format, true, false);
    let store_format = |p: &Platform| {
        let (f, d) = crate::export::manifest_format(&format, true, annotations, p);
        ((!f.annotations.is_empty()).then_some(f), d)
    };
    let parts = IndexParts {
        names: &names,
        annotations: &index_annotations,
    };
    let stored = convert_and_assemble(store, &with, &store_format, parts, Some(&names))?;
    let mut manifest = None;
    for out in &request.outputs {
        let (format, kind, dest) = match out {
            OutputSpec::Oci { dest, format } => (format, ArchiveFormat::Oci, dest),
            OutputSpec::Docker { dest, format } => (format, ArchiveFormat::Docker, dest),
            OutputSpec::Local { dest } => {
                for p in platforms {
                    let dir = dest.join(platform_dir(&p.platform));
                    std::fs::create_dir_all(&dir).map_err(|source| BuildError::OutputDir {
                        path: dir.clone(),
                        source,
                    })?;
                    crate::export::unpack_layers(store, &p.image, &dir)?;
                }
                continue;
            }
            _ => continue,
        };
        let oci = kind == ArchiveFormat::Oci;
        // A multi-platform archive is an index anyway: the default
        // provenance goes in (BuildKit filters `inline-only` ones only
        // where they would turn a bare manifest into an index).
        let (with, format, oci_default, index_annotations) = plan(format, oci, true);
        let format_of = |p: &Platform| {
            let (f, d) = crate::export::manifest_format(&format, oci_default, annotations, p);
            (Some(f), d)
        };
        let parts = IndexParts {
            names: &names,
            annotations: &index_annotations,
        };
        let converted = convert_and_assemble(store, &with, &format_of, parts, None)?;
        let name = names.first().cloned();
        let selected: Vec<(Image, Option<ImageRef>)> = converted
            .images
            .iter()
            .map(|i| (i.clone(), name.clone()))
            .collect();
        let description = ManifestDescription {
            media_type: None,
            annotations: annotations_of(AnnotationKind::IndexDescriptor, annotations, &format),
            index: Some(converted.index.clone()),
        };
        let mut stream = options.host.open(dest).map_err(BuildError::Host)?;
        archive::write_archive_described(store, &selected, kind, &mut stream, &description)
            .map_err(|source| BuildError::Archive {
                dest: dest.clone(),
                source,
            })?;
        stream.finish().map_err(BuildError::Host)?;
        manifest = Some(exported_index(&converted.index));
    }
    let push = request.push
        || request
            .outputs
            .iter()
            .any(|o| matches!(o, OutputSpec::Image { push: true, .. }));
    if push {
        if names.is_empty() {
            return Err(BuildError::PushNeedsName);
        }
        let (with, format, _, index_annotations) = plan(&image_format, false, true);
        let format_of = |p: &Platform| {
            let (f, d) = crate::export::manifest_format(&format, false, annotations, p);
            (Some(f), d)
        };
        let parts = IndexParts {
            names: &names,
            annotations: &index_annotations,
        };
        // New compressed layers go up as they are made, to the first name.
        let mut streamed = rbuild_registry::Streamed::default();
        for p in platforms {
            let sent = rbuild_registry::stream_variants(
                store,
                client,
                &names[0],
                &p.image,
                &format.layer_compression(),
            )
            .map_err(|source| BuildError::Push {
                reference: Box::new(names[0].clone()),
                source,
            })?;
            streamed.extend(sent);
        }
        let converted = convert_and_assemble(store, &with, &format_of, parts, None)?;
        for (i, name) in names.iter().enumerate() {
            let sent = if i == 0 {
                streamed.clone()
            } else {
                rbuild_registry::Streamed::default()
            };
            push_converted_index(
                store,
                client,
                &converted,
                name,
                Some(&stored.index),
                &sent,
                options.events,
            )?;
        }
        manifest = Some(exported_index(&converted.index));
    }
    Ok(ExportedIndex {
        names,
        stored,
        manifest,
    })
}

/// BuildKit's per-platform directory name in a local export
/// (`linux_arm64`, `linux_arm_v7`).
fn platform_dir(p: &Platform) -> String {
    p.to_string().replace('/', "_")
}

/// One platform's events into the build's: step names prefixed with the
/// platform, vertex ids moved into a range of its own, the summary held
/// back for [`merge`].
struct PlatformEvents<'a> {
    inner: &'a dyn BuildEvents,
    platform: String,
    index: usize,
    summaries: &'a Mutex<Vec<(usize, Summary)>>,
}

/// Each platform's ids: graph steps and pulls are below 2^40 + 2^32, and
/// bake moves its targets' by up to 255 × 2^32 (below 2^41); platforms
/// move by `index` × 2^41 so the two never meet (and ids stay below 2^53
/// for JSON readers with fewer than 16 platforms).
const PLATFORM_ID_STRIDE: usize = 1 << 41;

impl PlatformEvents<'_> {
    fn id(&self, id: VertexId) -> VertexId {
        let offset = (self.index % 16) * PLATFORM_ID_STRIDE;
        debug_assert!(id.0 < PULL_STEP_BASE + (1 << 32));
        VertexId(id.0 + offset)
    }
}

impl BuildEvents for PlatformEvents<'_> {
    fn event(&self, event: &Event<'_>) {
        match *event {
            Event::Started { id, name } => {
                let name = match name.strip_prefix('[') {
                    Some(rest) if !rest.starts_with("internal]") => {
                        format!("[{} {rest}", self.platform)
                    }
                    _ => format!("[{}] {name}", self.platform),
                };
                self.inner.event(&Event::Started {
                    id: self.id(id),
                    name: &name,
                });
            }
            Event::Summary(s) => self
                .summaries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.index, s.clone())),
            ref other => self.inner.event(&other.with_id(|id| self.id(id))),
        }
    }
}
