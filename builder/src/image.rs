//! The image a build writes: the plan's config with layers, history and
//! times filled in, and its manifest, written to the store untagged.
//!
//! The image config's times come from the layers, not the clock: each
//! layer keeps the time it was first built (in the cache index), history
//! entries take their layer's time, and the image's `created` is the
//! newest layer's. So a fully cached rebuild writes a byte-identical
//! config and gets the same image ID, as BuildKit does.
//! `SOURCE_DATE_EPOCH` overrides all of them; with an output's
//! `rewrite-timestamp=true` the file times newer than it in the build's
//! own layers (not the base image's) are set to it too, as BuildKit does,
//! which gives those layers new diffIDs.

use rbuild_oci::time::{now_secs, rfc3339};
use rbuild_solver::image_config::History;
use rbuild_solver::plan::Plan;
use rbuild_store::{Image, Store};
use rbuild_worker::StepOutput;
use rbuild_worker::cache_transfer::INLINE_CACHE_FIELD;

use crate::error::BuildError;

/// Writes the image of `target` (the target step's output; `results` are
/// every step's, for history times) to the store, untagged. `epoch` is
/// `SOURCE_DATE_EPOCH`; `inline_cache` goes into the config as a field of
/// its own.
pub(crate) fn write_image(
    store: &Store,
    plan: &Plan,
    results: &[Option<StepOutput>],
    target: &StepOutput,
    epoch: Option<i64>,
    rewrite_timestamp: bool,
    inline_cache: Option<serde_json::Value>,
) -> Result<Image, BuildError> {
    let mut layers = target.layer_infos();
    // Held until the image names the rewritten layers.
    let _session = store.write_session()?;
    if let (true, Some(e)) = (rewrite_timestamp, epoch) {
        // Only the build's own layers: a base image's stay as published.
        let own: std::collections::BTreeSet<_> = plan
            .history
            .iter()
            .filter_map(|h| h.layer_step)
            .filter_map(|s| results.get(s.index()).and_then(Option::as_ref))
            .flat_map(|o| o.added_layers().iter().map(|l| l.info.diff_id))
            .collect();
        let epoch = u64::try_from(e).unwrap_or(0);
        for l in &mut layers {
            if own.contains(&l.diff_id) {
                *l = store.clamp_layer_mtimes(l, epoch)?;
            }
        }
    }
    let mut config = plan.config.clone();
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let built_times: Vec<&str> = target
        .layers
        .iter()
        .filter_map(|l| l.created.as_deref())
        .collect();
    let created = match epoch {
        Some(e) => rfc3339(e),
        None => built_times
            .iter()
            .max()
            .map(|s| s.to_string())
            .or_else(|| config.created.clone())
            .unwrap_or_else(|| rfc3339(now_secs())),
    };
    let mut last_time = created.clone();
    let mut planned = Vec::with_capacity(plan.history.len());
    for h in &plan.history {
        let added = h
            .layer_step
            .and_then(|s| results.get(s.index()).and_then(Option::as_ref))
            .map(|o| o.added_layers())
            .unwrap_or_default();
        if let Some(t) = added.last().and_then(|l| l.created.clone()) {
            last_time = t;
        }
        planned.push(History {
            created: Some(match epoch {
                Some(e) => rfc3339(e),
                None => last_time.clone(),
            }),
            created_by: Some(h.created_by.clone()),
            author: None,
            comment: Some("buildkit.dockerfile.v0".to_string()),
            empty_layer: added.is_empty(),
        });
    }
    config.history.extend(planned);
    config.created = Some(created);
    let serialized = |source| BuildError::ImageConfig { source };
    let bytes = match inline_cache {
        None => serde_json::to_vec(&config).map_err(serialized)?,
        Some(cache) => {
            // A top-level field of its own, as BuildKit's
            // `moby.buildkit.cache.v0`: image readers ignore it.
            let mut value = serde_json::to_value(&config).map_err(serialized)?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert(INLINE_CACHE_FIELD.to_string(), cache);
            }
            serde_json::to_vec(&value).map_err(serialized)?
        }
    };
    Ok(store.write_image_raw(&bytes, &layers, &[])?)
}
