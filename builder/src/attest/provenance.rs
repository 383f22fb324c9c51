//! SLSA provenance as BuildKit writes it: predicate
//! `https://slsa.dev/provenance/v0.2` (buildType
//! `https://mobyproject.org/buildkit@v1`) or `…/provenance/v1`, with the
//! build's materials (base images by digest, git sources by commit), its
//! invocation (frontend, Dockerfile, build args, target, platform; in
//! `mode=max` the secret and ssh ids, never their values) and metadata
//! (times, completeness, reproducible).

use std::collections::BTreeMap;

use rbuild_oci::Platform;
use serde_json::{Value, json};

use super::spec::{ProvenanceMode, ProvenanceSpec, SlsaVersion};

/// v0.2's predicate type.
pub const PREDICATE_V02: &str = "https://slsa.dev/provenance/v0.2";
/// v1's predicate type.
pub const PREDICATE_V1: &str = "https://slsa.dev/provenance/v1";
const BUILD_TYPE_V02: &str = "https://mobyproject.org/buildkit@v1";
const BUILD_TYPE_V1: &str =
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";

/// A base image the build read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageMaterial {
    /// Normalized, `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: rbuild_oci::Digest,
    /// `linux/amd64`.
    pub platform: String,
}

/// What a build records for its provenance, captured as it runs.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The Dockerfile's name as given (`Dockerfile`, `app/Dockerfile`).
    pub dockerfile: String,
    /// The context when it is not a local directory (a git or tarball URL).
    pub context_url: Option<String>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platform: Option<Platform>,
    /// Secret ids RUN steps mounted, with whether each was optional.
    pub secrets: BTreeMap<String, bool>,
    /// ssh ids RUN steps mounted, with whether each was optional.
    pub ssh: BTreeMap<String, bool>,
    pub images: Vec<ImageMaterial>,
    /// Git sources: remote and commit.
    pub git: Vec<(String, String)>,
    /// Local sources (`context`, `dockerfile`, named contexts).
    pub locals: Vec<String>,
    /// RUN steps with the network (the build is then not hermetic).
    pub network: bool,
    /// RFC 3339.
    pub started: String,
    pub finished: String,
    /// A random-ish id of this build invocation.
    pub invocation_id: String,
}

/// The provenance predicate for `capture` as `spec` asks, and its type.
pub fn predicate(capture: &Capture, spec: &ProvenanceSpec) -> (&'static str, Value) {
    let max = spec.mode == ProvenanceMode::Max;
    let mut materials: Vec<Value> = Vec::new();
    let mut images = capture.images.clone();
    images.sort();
    images.dedup();
    for m in &images {
        materials.push(json!({
            "uri": image_purl(&m.reference, Some(&m.platform)),
            "digest": {"sha256": m.digest.hex()},
        }));
    }
    let mut git = capture.git.clone();
    git.sort();
    git.dedup();
    for (remote, commit) in &git {
        let algo = if commit.len() == 64 { "sha256" } else { "sha1" };
        materials.push(json!({"uri": remote, "digest": {algo: commit}}));
    }
    // Frontend options with BuildKit's keys; min mode drops the values
    // of build args and labels (they may carry anything).
    let mut args = BTreeMap::new();
    if max {
        for (k, v) in &capture.build_args {
            args.insert(format!("build-arg:{k}"), v.clone());
        }
        for (k, v) in &capture.labels {
            args.insert(format!("label:{k}"), v.clone());
        }
    }
    if let Some(t) = &capture.target {
        args.insert("target".to_string(), t.clone());
    }
    let complete_params = max || (capture.build_args.is_empty() && capture.labels.is_empty());
    let mut params = json!({"frontend": "dockerfile.v0"});
    if !args.is_empty() {
        params["args"] = json!(args);
    }
    if !capture.locals.is_empty() {
        params["locals"] = json!(
            capture
                .locals
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        );
    }
    if max {
        let ids = |m: &BTreeMap<String, bool>| -> Vec<Value> {
            m.iter()
                .map(|(id, optional)| {
                    let mut v = json!({"id": id});
                    if *optional {
                        v["optional"] = json!(true);
                    }
                    v
                })
                .collect()
        };
        if !capture.secrets.is_empty() {
            params["secrets"] = json!(ids(&capture.secrets));
        }
        if !capture.ssh.is_empty() {
            params["ssh"] = json!(ids(&capture.ssh));
        }
    }
    let platform = capture
        .platform
        .clone()
        .unwrap_or_else(Platform::host)
        .to_string();
    // Local sources are not in the materials: they are incomplete.
    let complete_materials = capture.locals.is_empty();
    let builder_id = spec.builder_id.clone().unwrap_or_default();
    let mut config_source = json!({});
    if let Some(url) = &capture.context_url {
        config_source["uri"] = json!(redact(url));
        if let Some((_, commit)) = git.iter().find(|(r, _)| url.starts_with(r.as_str())) {
            config_source["digest"] = json!({"sha1": commit});
        }
    }
    match spec.version {
        SlsaVersion::V02 => {
            config_source["entryPoint"] = json!(capture.dockerfile);
            let mut metadata = json!({
                "buildInvocationID": capture.invocation_id,
                "buildStartedOn": capture.started,
                "buildFinishedOn": capture.finished,
                "completeness": {
                    "parameters": complete_params,
                    "environment": true,
                    "materials": complete_materials,
                },
                "reproducible": spec.reproducible,
                "https://mobyproject.org/buildkit@v1#metadata": {},
            });
            if complete_materials && !capture.network {
                metadata["https://mobyproject.org/buildkit@v1#hermetic"] = json!(true);
            }
            let predicate = json!({
                "builder": {"id": builder_id},
                "buildType": BUILD_TYPE_V02,
                "materials": materials,
                "invocation": {
                    "configSource": config_source,
                    "parameters": params,
                    "environment": {"platform": platform},
                },
                "metadata": metadata,
            });
            (PREDICATE_V02, predicate)
        }
        SlsaVersion::V1 => {
            config_source["path"] = json!(capture.dockerfile);
            let mut metadata = json!({
                "invocationID": capture.invocation_id,
                "startedOn": capture.started,
                "finishedOn": capture.finished,
                "buildkit_completeness": {
                    "request": complete_params,
                    "resolvedDependencies": complete_materials,
                },
                "buildkit_metadata": {},
            });
            if spec.reproducible {
                metadata["buildkit_reproducible"] = json!(true);
            }
            if complete_materials && !capture.network {
                metadata["buildkit_hermetic"] = json!(true);
            }
            let deps: Vec<Value> = materials;
            let predicate = json!({
                "buildDefinition": {
                    "buildType": BUILD_TYPE_V1,
                    "externalParameters": {
                        "configSource": config_source,
                        "request": params,
                    },
                    "internalParameters": {"builderPlatform": Platform::host().to_string()},
                    "resolvedDependencies": deps,
                },
                "runDetails": {
                    "builder": {"id": builder_id},
                    "metadata": metadata,
                },
            });
            (PREDICATE_V1, predicate)
        }
    }
}

/// `user:password@` taken out of a URL.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.split_once('@') {
            if !creds.contains('/') {
                let _ = creds;
                return format!("{scheme}://{host}");
            }
        }
    }
    url.to_string()
}

/// BuildKit's purl for an image reference: `pkg:docker/NAMESPACE/NAME@TAG`
/// from the familiar name (`busybox`, `localhost%3A5000/app`), with a
/// `digest=` qualifier for a digest reference and `platform=` when given.
pub fn image_purl(reference: &str, platform: Option<&str>) -> String {
    let (name, tag, digest) = match rbuild_oci::reference::ImageRef::parse(reference) {
        Ok(r) => (
            r.familiar_repository(),
            r.tag().map(str::to_string),
            r.digest().map(|d| d.to_string()),
        ),
        Err(_) => (reference.to_string(), None, None),
    };
    let tag = match (&tag, &digest) {
        (None, None) => Some("latest".to_string()),
        _ => tag,
    };
    let (ns, short) = match name.rsplit_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, name.as_str()),
    };
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let mut out = "pkg:docker/".to_string();
    if let Some(ns) = ns {
        let segs: Vec<String> = ns.split('/').map(enc).collect();
        out.push_str(&segs.join("/"));
        out.push('/');
    }
    out.push_str(&enc(short));
    if let Some(t) = tag {
        out.push('@');
        out.push_str(&enc(&t));
    }
    let mut q = Vec::new();
    if let Some(d) = digest {
        q.push(format!("digest={}", enc(&d)));
    }
    if let Some(p) = platform {
        q.push(format!("platform={}", enc(p)));
    }
    if !q.is_empty() {
        out.push('?');
        out.push_str(&q.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_as_buildkit() {
        assert_eq!(
            image_purl("docker.io/library/alpine:latest", Some("linux/amd64")),
            "pkg:docker/alpine@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            image_purl("localhost:5000/team/app:1.0", None),
            "pkg:docker/localhost%3A5000/team/app@1.0"
        );
    }

    fn capture() -> Capture {
        Capture {
            dockerfile: "Dockerfile".into(),
            build_args: [("TOKEN_HINT".to_string(), "visible".to_string())].into(),
            secrets: [("npmrc".to_string(), false)].into(),
            images: vec![ImageMaterial {
                reference: "docker.io/library/busybox:latest".into(),
                digest: rbuild_oci::Digest::of(b"m"),
                platform: "linux/amd64".into(),
            }],
            locals: vec!["context".into(), "dockerfile".into()],
            started: "2024-01-01T00:00:00Z".into(),
            finished: "2024-01-01T00:00:01Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn min_leaves_out_arg_values_and_secret_ids() {
        let (t, p) = predicate(&capture(), &ProvenanceSpec::default());
        assert_eq!(t, PREDICATE_V02);
        let text = p.to_string();
        assert!(
            !text.contains("visible") && !text.contains("npmrc"),
            "{text}"
        );
        assert_eq!(p["buildType"], BUILD_TYPE_V02);
        assert_eq!(p["metadata"]["completeness"]["parameters"], false);
        assert_eq!(
            p["materials"][0]["uri"],
            "pkg:docker/busybox@latest?platform=linux%2Famd64"
        );
    }

    #[test]
    fn max_and_v1() {
        let spec = ProvenanceSpec {
            mode: ProvenanceMode::Max,
            version: SlsaVersion::V1,
            ..Default::default()
        };
        let (t, p) = predicate(&capture(), &spec);
        assert_eq!(t, PREDICATE_V1);
        let req = &p["buildDefinition"]["externalParameters"]["request"];
        assert_eq!(req["args"]["build-arg:TOKEN_HINT"], "visible");
        assert_eq!(req["secrets"][0]["id"], "npmrc");
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["configSource"]["path"],
            "Dockerfile"
        );
    }
}
