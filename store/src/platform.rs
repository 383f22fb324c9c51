//! Choosing one image from an index (manifest list) for a platform, by
//! containerd's rules: the OS and architecture must be equal; the variant
//! must be equal, except that `arm64` treats no variant as `v8` and `arm`
//! accepts older variants (v6 runs on v7) when no exact match exists.
//! Entries with `unknown` platforms (BuildKit's attestations) never match.

use rbuild_oci::Platform;

use crate::Descriptor;

/// The descriptor in `manifests` to use on `platform`, and when there is
/// none, the platforms that are there (for the error message).
pub fn select_manifest(
    manifests: &[Descriptor],
    platform: &Platform,
) -> Result<Descriptor, Vec<String>> {
    let wanted_variant = normalize_variant(&platform.architecture, platform.variant.as_deref());
    let mut best: Option<(u32, &Descriptor)> = None;
    let mut available = Vec::new();
    for d in manifests {
        let Some(p) = &d.platform else { continue };
        let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (os, arch, variant) = (field("os"), field("architecture"), field("variant"));
        if os == "unknown" || arch == "unknown" {
            continue;
        }
        available.push(if variant.is_empty() {
            format!("{os}/{arch}")
        } else {
            format!("{os}/{arch}/{variant}")
        });
        if os != platform.os || arch != platform.architecture {
            continue;
        }
        let variant = normalize_variant(arch, Some(variant));
        // Higher is better: exact variant, then the closest older arm one.
        let score = if variant == wanted_variant {
            100
        } else if arch == "arm"
            && let (Some(have), Some(want)) = (arm_level(&variant), arm_level(&wanted_variant))
            && have < want
        {
            have
        } else if variant.is_empty() {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, d));
        }
    }
    match best {
        Some((_, d)) => Ok(d.clone()),
        None => {
            available.dedup();
            Err(available)
        }
    }
}

fn normalize_variant(arch: &str, variant: Option<&str>) -> String {
    match (arch, variant.unwrap_or("")) {
        ("arm64", "") => "v8".to_string(),
        ("arm", "") => "v7".to_string(),
        (_, v) => v.to_string(),
    }
}

fn arm_level(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(n: u8, platform: serde_json::Value) -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 1,
            annotations: Default::default(),
            platform: Some(platform),
        }
    }

    fn plat(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn picks_the_host_platform_and_skips_attestations() {
        let list = vec![
            desc(
                1,
                serde_json::json!({"os":"unknown","architecture":"unknown"}),
            ),
            desc(
                2,
                serde_json::json!({"os":"linux","architecture":"arm64","variant":"v8"}),
            ),
            desc(3, serde_json::json!({"os":"linux","architecture":"amd64"})),
            desc(
                4,
                serde_json::json!({"os":"windows","architecture":"amd64"}),
            ),
        ];
        assert_eq!(
            select_manifest(&list, &plat("amd64", None)).unwrap(),
            list[2]
        );
        assert_eq!(
            select_manifest(&list, &plat("arm64", Some("v8"))).unwrap(),
            list[1]
        );
        // arm64 with no variant is v8.
        assert_eq!(
            select_manifest(&list, &plat("arm64", None)).unwrap(),
            list[1]
        );
        let err = select_manifest(&list, &plat("riscv64", None)).unwrap_err();
        assert_eq!(err, ["linux/arm64/v8", "linux/amd64", "windows/amd64"]);
    }

    #[test]
    fn arm_falls_back_to_the_closest_older_variant() {
        let list = vec![
            desc(
                1,
                serde_json::json!({"os":"linux","architecture":"arm","variant":"v5"}),
            ),
            desc(
                2,
                serde_json::json!({"os":"linux","architecture":"arm","variant":"v6"}),
            ),
        ];
        assert_eq!(
            select_manifest(&list, &plat("arm", Some("v7"))).unwrap(),
            list[1]
        );
        assert!(select_manifest(&list[..1], &plat("arm", Some("v5"))).is_ok());
        assert!(select_manifest(&list[1..], &plat("arm", Some("v5"))).is_err());
    }
}
