//! The event log (`<root>/events-v1.jsonl`): one line per container,
//! image, volume or network event, as `docker events` prints them. Image
//! events take docker's actions and actors: `pull`/`push` (the reference),
//! `tag` (the image ID, `name=` the new tag), `untag`/`delete`/`load`/
//! `save`/`import` (the image ID); volumes `create`/`destroy`, networks
//! `create`/`destroy`.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One event (docker's `events --format '{{json .}}'` fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    #[serde(rename = "timeNano")]
    pub time_nano: i128,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// The event log of a store root.
pub fn path(root: &Path) -> PathBuf {
    root.join("events-v1.jsonl")
}

/// A container event, with docker's actor attributes (image and name).
pub fn container(root: &Path, action: &str, config: &crate::config::ContainerConfig) {
    record(
        root,
        "container",
        action,
        &config.id,
        &[("image", &config.image), ("name", &config.name)],
    );
}

/// Appends an event (best effort: an event log that cannot be written
/// never fails the operation). One `write` of one line with O_APPEND, so
/// concurrent writers do not interleave.
pub fn record(root: &Path, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
    let event = Event {
        kind: kind.to_string(),
        action: action.to_string(),
        actor: Actor {
            id: id.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        time_nano: crate::log::now_nanos(),
    };
    let Ok(mut line) = serde_json::to_vec(&event) else {
        return;
    };
    line.push(b'\n');
    let p = path(root);
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&p)
    {
        let _ = f.write_all(&line);
    }
}

/// Events from byte `offset` on, and the offset after them.
pub fn read_from(root: &Path, offset: u64) -> (Vec<Event>, u64) {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path(root)) else {
        return (Vec::new(), offset);
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut offset = offset;
    let mut out = Vec::new();
    let mut r = BufReader::new(f);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => {
                offset += n as u64;
                if let Ok(e) = serde_json::from_str(&line) {
                    out.push(e);
                }
            }
            _ => break,
        }
    }
    (out, offset)
}

/// The exit code the last `die` event of container `id` recorded: what a
/// waiter reports of a container removed as it exited (`--rm`).
pub fn last_exit_code(root: &Path, id: &str) -> Option<i32> {
    read_from(root, 0)
        .0
        .iter()
        .rev()
        .find(|e| e.kind == "container" && e.action == "die" && e.actor.id == id)
        .and_then(|e| e.actor.attributes.get("exitCode")?.parse().ok())
}

impl Event {
    /// docker's JSON of the event (`events --format '{{json .}}'`): the
    /// legacy `status`/`id`/`from` fields for containers and images, then
    /// `Type`, `Action`, `Actor`, `scope`, `time`, `timeNano`.
    pub fn docker_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if matches!(self.kind.as_str(), "container" | "image") {
            m.insert("status".into(), self.action.clone().into());
            m.insert("id".into(), self.actor.id.clone().into());
            if let Some(from) = self.actor.attributes.get("image") {
                m.insert("from".into(), from.clone().into());
            }
        }
        m.insert("Type".into(), self.kind.clone().into());
        m.insert("Action".into(), self.action.clone().into());
        m.insert(
            "Actor".into(),
            serde_json::json!({"ID": self.actor.id, "Attributes": self.actor.attributes}),
        );
        m.insert("scope".into(), "local".into());
        m.insert(
            "time".into(),
            (self.time_nano.div_euclid(1_000_000_000) as i64).into(),
        );
        m.insert("timeNano".into(), (self.time_nano as i64).into());
        serde_json::Value::Object(m)
    }

    /// docker's line: `TIME TYPE ACTION ID (k=v, …)`.
    pub fn line(&self) -> String {
        let attrs: Vec<String> = self
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} {} {} {} ({})",
            crate::log::format_nanos(self.time_nano),
            self.kind,
            self.action,
            self.actor.id,
            attrs.join(", ")
        )
    }
}
