//! The image config as Docker writes it: the OCI image config plus
//! Docker's extensions that builds rely on (`Healthcheck`, `OnBuild`,
//! `Shell`, `ArgsEscaped`). Field names and omission rules follow Docker's
//! JSON so `docker inspect`-style output and `docker load` agree.
//!
//! The one config model of rbuild: the planner reads base images' configs
//! in this form and produces the built image's config; the store, the
//! registry client and the image commands read configs through it, so no
//! path drops a field (unknown fields are kept in `extra`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole image config blob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields this struct does not model, kept when a base config is read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `config` of an image: how containers from it run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "is_empty_text")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_set")]
    pub exposed_ports: Option<BTreeMap<String, EmptyObject>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_set")]
    pub volumes: Option<BTreeMap<String, EmptyObject>>,
    #[serde(default, skip_serializing_if = "is_empty_text")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_labels")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "is_empty_text")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "is_not_true")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    pub shell: Option<Vec<String>>,
    /// Fields this struct does not model, kept from a base config.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `{}`, the value type of Docker's port and volume sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// Docker's `Healthcheck`; durations in nanoseconds, 0 = inherit default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    pub retries: u32,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u(v: &u32) -> bool {
    *v == 0
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry; `empty_layer` entries have no layer in `rootfs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_text")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_text")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_text")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

// Absent and empty fields are left out, as Go's `omitempty` does in the
// configs BuildKit writes (OCI image-spec and docker-image-spec structs):
// `CMD []` gives no `Cmd`, and a base whose history says `"created_by": ""`
// is not carried on with it.
fn is_empty_text(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(str::is_empty)
}

fn is_empty_list(v: &Option<Vec<String>>) -> bool {
    v.as_ref().is_none_or(Vec::is_empty)
}

fn is_empty_set(v: &Option<BTreeMap<String, EmptyObject>>) -> bool {
    v.as_ref().is_none_or(BTreeMap::is_empty)
}

fn is_empty_labels(v: &Option<BTreeMap<String, String>>) -> bool {
    v.as_ref().is_none_or(BTreeMap::is_empty)
}

fn is_not_true(v: &Option<bool>) -> bool {
    *v != Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_fields_are_left_out_as_go_omitempty_does() {
        let c: ContainerConfig = serde_json::from_str(
            r#"{"Cmd":[],"Entrypoint":[],"Env":[],"User":"","WorkingDir":"","Labels":{},"Volumes":{},"ArgsEscaped":false,"Shell":["sh"]}"#,
        )
        .unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"Shell":["sh"]}"#);
    }

    #[test]
    fn empty_history_text_is_left_out_as_go_omitempty_does() {
        let h: History =
            serde_json::from_str(r#"{"created_by":"","author":"","comment":"c"}"#).unwrap();
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"comment":"c"}"#);
    }

    #[test]
    fn docker_fields_round_trip_and_unknown_fields_are_kept() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000},"Custom":1},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x","empty_layer":true}],"container":"abc"}"#;
        let c: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(
            c.config.on_build.as_deref(),
            Some(&["RUN x".to_string()][..])
        );
        assert_eq!(
            c.config.healthcheck.as_ref().unwrap().interval,
            1_000_000_000
        );
        assert!(c.history[0].empty_layer);
        let back: serde_json::Value = serde_json::to_value(&c).unwrap();
        assert_eq!(back["config"]["Custom"], 1);
        assert_eq!(back["container"], "abc");
    }
}
