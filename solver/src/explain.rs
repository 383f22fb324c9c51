//! Explaining cache misses: given what a step's key was made of in the
//! previous build and in this one, say which part differs — the base
//! image, the command, an environment variable, a file, an earlier step.
//!
//! Pure: the CLI saves a [`StepFingerprint`] per step lineage after each
//! build (the worker's lineage store persists it) and calls [`explain`]
//! when a step that has a previous fingerprint misses the cache index.
//!
//! Fingerprints hold what [`KeyParts`] holds, in serializable form, plus
//! the per-file digests of a COPY's sources. Only names of environment
//! variables are reported, never their values: build args may hold
//! values a user would not want in a report.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cache_key::CacheKey;
use crate::file_digests::FileDigests;
use crate::scheduler::KeyParts;

/// How many file names a [`Change::Files`] lists per kind before it
/// only counts.
pub const MAX_FILES_LISTED: usize = 10;

/// Tags the op encodings write as lists ([`crate::KeyEncoder::strs`]):
/// a count, then one field per element.
const LIST_TAGS: [&str; 4] = ["args", "env", "sources", "exclude"];

/// What a step's key was made of, in a form that can be saved as JSON
/// and compared with a later build's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFingerprint {
    /// The step's key (`sha256:…`).
    pub key: String,
    /// The op's fields as `(tag, readable value)`, in encoding order.
    pub fields: Vec<(String, String)>,
    /// The keys of the step's inputs, in order.
    pub inputs: Vec<String>,
    /// The content digest the worker computed (COPY's sources), if any.
    pub content: Option<String>,
    /// Per-file digests behind `content`, sorted by path; empty when not
    /// a COPY. Saved as `[path, "sha256:…"]` pairs. Shared with the
    /// worker that computed them, not copied, and for a large context on
    /// disk rather than in memory ([`FileDigests`]).
    #[serde(default)]
    pub files: FileDigests,
}

impl StepFingerprint {
    /// The fingerprint of a step with key `key` made of `parts`, whose
    /// content digest was computed over `files`.
    pub fn new(key: &CacheKey, parts: &KeyParts, files: FileDigests) -> StepFingerprint {
        StepFingerprint {
            key: key.to_string(),
            fields: parts
                .fields
                .iter()
                .map(|f| (f.tag.clone(), f.value.clone()))
                .collect(),
            inputs: parts.inputs.iter().map(|k| k.to_string()).collect(),
            content: parts.content.map(|d| d.to_string()),
            files,
        }
    }

    /// The op's fields grouped by tag, in first-appearance order; lists
    /// without their leading count.
    fn grouped(&self) -> Vec<(&str, Vec<&str>)> {
        let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
        for (tag, value) in &self.fields {
            match out.iter_mut().find(|(t, _)| t == tag) {
                Some((_, values)) => values.push(value),
                None => out.push((tag, vec![value])),
            }
        }
        for (tag, values) in &mut out {
            if LIST_TAGS.contains(tag) && !values.is_empty() {
                values.remove(0);
            }
        }
        out
    }

    fn kind(&self) -> Option<&str> {
        self.fields
            .iter()
            .find(|(t, _)| t == "kind")
            .map(|(_, v)| v.as_str())
    }
}

/// Why a step missed the cache index although a previous build ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum MissReason {
    /// Nothing the key is made of changed: the result was removed from
    /// the cache index (pruned, or its blobs collected) or the cache was
    /// skipped (`--no-cache`).
    Unchanged,
    /// What differs, the step's own op first, then inputs, then files.
    Changed { changes: Vec<Change> },
}

/// One difference between the previous and the current key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "kebab-case")]
pub enum Change {
    /// The instruction became a different kind of step.
    Kind { previous: String, current: String },
    /// The base image resolved to another manifest (FROM's tag moved,
    /// or another image was named).
    BaseImage { previous: String, current: String },
    /// The command (RUN's argv) changed.
    Command {
        previous: Vec<String>,
        current: Vec<String>,
    },
    /// Environment variables or build args in scope changed (names only).
    Env {
        changed: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
        /// Same variables and values in another order.
        reordered: bool,
    },
    /// Another field of the op changed (user, cwd, network, mounts,
    /// COPY's sources, destination, flags…): its tag as encoded.
    Field {
        name: String,
        previous: String,
        current: String,
    },
    /// An earlier step's result changed: input number `input` (0: the
    /// filesystem the step works on; 1: `--from`'s source).
    Input {
        input: usize,
        previous: String,
        current: String,
    },
    /// The number of inputs changed.
    Inputs { previous: usize, current: usize },
    /// Source files of a COPY changed, named for people (bytes that are
    /// not UTF-8 as `\xNN`, as Go prints them). Lists hold at most
    /// [`MAX_FILES_LISTED`] names each; `more` counts the rest.
    Files {
        changed: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
        more: usize,
    },
    /// The content digest changed but no per-file list says why (one of
    /// the builds did not save file digests).
    Content,
}

/// Compares the previous build's fingerprint of a step with this one's.
pub fn explain(previous: &StepFingerprint, current: &StepFingerprint) -> MissReason {
    let mut changes = Vec::new();
    let (pk, ck) = (previous.kind(), current.kind());
    if pk != ck {
        changes.push(Change::Kind {
            previous: pk.unwrap_or_default().to_string(),
            current: ck.unwrap_or_default().to_string(),
        });
    } else {
        op_changes(previous, current, &mut changes);
    }
    if previous.inputs.len() != current.inputs.len() {
        changes.push(Change::Inputs {
            previous: previous.inputs.len(),
            current: current.inputs.len(),
        });
    } else {
        for (i, (p, c)) in previous.inputs.iter().zip(&current.inputs).enumerate() {
            if p != c {
                changes.push(Change::Input {
                    input: i,
                    previous: p.clone(),
                    current: c.clone(),
                });
            }
        }
    }
    if previous.content != current.content {
        if previous.files.is_empty() && current.files.is_empty() {
            changes.push(Change::Content);
        } else if let Some(files) = file_changes(&previous.files, &current.files) {
            changes.push(files);
        } else {
            changes.push(Change::Content);
        }
    }
    if changes.is_empty() {
        MissReason::Unchanged
    } else {
        MissReason::Changed { changes }
    }
}

fn op_changes(previous: &StepFingerprint, current: &StepFingerprint, out: &mut Vec<Change>) {
    let (prev, cur) = (previous.grouped(), current.grouped());
    let get = |g: &[(&str, Vec<&str>)], tag: &str| -> Option<Vec<String>> {
        g.iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.iter().map(|s| s.to_string()).collect())
    };
    let mut tags: Vec<&str> = prev.iter().map(|(t, _)| *t).collect();
    for (t, _) in &cur {
        if !tags.contains(t) {
            tags.push(t);
        }
    }
    for tag in tags {
        let (p, c) = (get(&prev, tag), get(&cur, tag));
        if p == c {
            continue;
        }
        let (p, c) = (p.unwrap_or_default(), c.unwrap_or_default());
        out.push(match tag {
            "digest" => Change::BaseImage {
                previous: p.join(" "),
                current: c.join(" "),
            },
            "args" => Change::Command {
                previous: p,
                current: c,
            },
            "env" => env_change(&p, &c),
            _ => Change::Field {
                name: tag.to_string(),
                previous: p.join(" "),
                current: c.join(" "),
            },
        });
    }
}

fn env_change(previous: &[String], current: &[String]) -> Change {
    let map = |entries: &[String]| -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    };
    let (p, c) = (map(previous), map(current));
    let changed = p
        .iter()
        .filter(|(k, v)| c.get(*k).is_some_and(|cv| cv != *v))
        .map(|(k, _)| k.clone())
        .collect();
    let added = c.keys().filter(|k| !p.contains_key(*k)).cloned().collect();
    let removed = p.keys().filter(|k| !c.contains_key(*k)).cloned().collect();
    Change::Env {
        changed,
        added,
        removed,
        reordered: p == c,
    }
}

fn file_changes(previous: &FileDigests, current: &FileDigests) -> Option<Change> {
    // Both lists are sorted by path with one entry per path: one merge
    // pass, streaming (a large context's lists are on disk). A list that
    // cannot be read explains nothing: the caller says the content
    // changed.
    let mut p = previous.iter().peekable();
    let mut c = current.iter().peekable();
    let (mut changed, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    let mut more = 0;
    let mut note = |names: &mut Vec<String>, name: &str| {
        if names.len() < MAX_FILES_LISTED {
            // For people: a name that is not UTF-8 escaped as Go prints it.
            names.push(rbuild_oci::path_text::display(name).to_string());
        } else {
            more += 1;
        }
    };
    loop {
        let order = match (p.peek(), c.peek()) {
            (Some(Err(_)), _) | (_, Some(Err(_))) => return None,
            (Some(Ok((pk, _))), Some(Ok((ck, _)))) => pk.cmp(ck),
            (Some(Ok(_)), None) => std::cmp::Ordering::Less,
            (None, Some(Ok(_))) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match order {
            std::cmp::Ordering::Equal => {
                let (Some(Ok((pk, pv))), Some(Ok((_, cv)))) = (p.next(), c.next()) else {
                    unreachable!("both peeked")
                };
                if pv != cv {
                    note(&mut changed, &pk);
                }
            }
            std::cmp::Ordering::Less => {
                let Some(Ok((pk, _))) = p.next() else {
                    unreachable!("peeked")
                };
                note(&mut removed, &pk);
            }
            std::cmp::Ordering::Greater => {
                let Some(Ok((ck, _))) = c.next() else {
                    unreachable!("peeked")
                };
                note(&mut added, &ck);
            }
        }
    }
    if changed.is_empty() && added.is_empty() && removed.is_empty() {
        return None;
    }
    Some(Change::Files {
        changed,
        added,
        removed,
        more,
    })
}

/// `changed a, b`, `added c`, `removed d`: the non-empty lists, in that order.
fn change_lists(changed: &[String], added: &[String], removed: &[String]) -> Vec<String> {
    [("changed", changed), ("added", added), ("removed", removed)]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} {}", names.join(", ")))
        .collect()
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Kind { previous, current } => {
                write!(f, "the instruction changed from {previous} to {current}")
            }
            Change::BaseImage { previous, current } => {
                write!(f, "the base image changed from {previous} to {current}")
            }
            Change::Command { previous, current } => write!(
                f,
                "the command changed from {:?} to {:?}",
                previous.join(" "),
                current.join(" ")
            ),
            Change::Env {
                changed,
                added,
                removed,
                reordered,
            } => {
                let mut parts = change_lists(changed, added, removed);
                if *reordered {
                    parts.push("reordered".to_string());
                }
                write!(f, "environment: {}", parts.join("; "))
            }
            Change::Field {
                name,
                previous,
                current,
            } => write!(f, "{name} changed from {previous:?} to {current:?}"),
            Change::Input { input, .. } => write!(
                f,
                "an earlier step changed (input {input}{})",
                if *input == 0 {
                    ": the filesystem this step runs on"
                } else {
                    ""
                }
            ),
            Change::Inputs { previous, current } => {
                write!(f, "the step now has {current} inputs instead of {previous}")
            }
            Change::Files {
                changed,
                added,
                removed,
                more,
            } => {
                let mut parts = change_lists(changed, added, removed);
                if *more > 0 {
                    parts.push(format!("and {more} more"));
                }
                write!(f, "files: {}", parts.join("; "))
            }
            Change::Content => f.write_str("the source files changed"),
        }
    }
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::Unchanged => f.write_str(
                "nothing changed: the previous result is no longer in the cache index (pruned) or the cache was skipped",
            ),
            MissReason::Changed { changes } => {
                let shown: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                f.write_str(&shown.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_key::KeyEncoder;
    use crate::digest::Digest;
    use crate::graph::KeyedOp;
    use crate::op::{ExecNetwork, ExecOp, ImageOp, Op};

    fn fingerprint(op: &Op, inputs: &[CacheKey], files: &[(&str, &[u8])]) -> StepFingerprint {
        let mut enc = KeyEncoder::recording(op.kind());
        op.encode(&mut enc);
        let (key, fields) = enc.finish_with_fields();
        let files: Vec<(String, Digest)> = files
            .iter()
            .map(|(p, c)| (p.to_string(), Digest::of(c)))
            .collect();
        let content = (!files.is_empty()).then(|| {
            let all: Vec<u8> = files
                .iter()
                .flat_map(|(p, d)| [p.as_bytes(), d.as_bytes()].concat())
                .collect();
            Digest::of(&all)
        });
        let parts = KeyParts {
            fields,
            inputs: inputs.to_vec(),
            content,
        };
        StepFingerprint::new(&key, &parts, FileDigests::from_vec(files))
    }

    fn exec(args: &[&str], env: &[&str]) -> Op {
        Op::Exec(ExecOp {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            cwd: "/".into(),
            user: String::new(),
            network: ExecNetwork::Host,
            mounts: Vec::new(),
            proxy_env: Vec::new(),
            display: "RUN x".into(),
        })
    }

    fn key(n: u8) -> CacheKey {
        CacheKey::from_digest(Digest::of(&[n]))
    }

    #[test]
    fn an_env_change_names_the_variable_not_its_value() {
        let a = fingerprint(&exec(&["sh"], &["A=1", "B=2", "GONE=x"]), &[key(0)], &[]);
        let b = fingerprint(&exec(&["sh"], &["A=1", "B=3", "NEW=y"]), &[key(0)], &[]);
        let reason = explain(&a, &b);
        assert_eq!(
            reason,
            MissReason::Changed {
                changes: vec![Change::Env {
                    changed: vec!["B".into()],
                    added: vec!["NEW".into()],
                    removed: vec!["GONE".into()],
                    reordered: false,
                }]
            }
        );
        let text = reason.to_string();
        assert!(text.contains("changed B"), "{text}");
        assert!(!text.contains('3'), "values stay out of reports: {text}");
    }

    #[test]
    fn a_command_change_shows_both_commands() {
        let a = fingerprint(&exec(&["sh", "-c", "make"], &[]), &[key(0)], &[]);
        let b = fingerprint(&exec(&["sh", "-c", "make all"], &[]), &[key(0)], &[]);
        let reason = explain(&a, &b);
        let MissReason::Changed { changes } = &reason else {
            panic!("{reason:?}")
        };
        assert!(
            matches!(&changes[..], [Change::Command { current, .. }] if current[2] == "make all")
        );
        assert!(reason.to_string().contains("\"sh -c make all\""));
    }

    #[test]
    fn a_base_digest_change_is_the_base_image() {
        let img = |d: u8| {
            Op::Image(ImageOp {
                reference: "docker.io/library/busybox:latest".into(),
                digest: Digest::of(&[d]),
                platform: "linux/amd64".into(),
            })
        };
        let reason = explain(
            &fingerprint(&img(1), &[], &[]),
            &fingerprint(&img(2), &[], &[]),
        );
        let MissReason::Changed { changes } = reason else {
            panic!()
        };
        assert_eq!(
            changes,
            vec![Change::BaseImage {
                previous: Digest::of(&[1]).to_string(),
                current: Digest::of(&[2]).to_string(),
            }]
        );
    }

    #[test]
    fn an_input_change_names_the_input() {
        let op = exec(&["sh"], &[]);
        let reason = explain(
            &fingerprint(&op, &[key(1)], &[]),
            &fingerprint(&op, &[key(2)], &[]),
        );
        assert!(matches!(
            reason,
            MissReason::Changed { ref changes } if matches!(changes[..], [Change::Input { input: 0, .. }])
        ));
        assert!(reason.to_string().contains("an earlier step changed"));
    }

    #[test]
    fn file_changes_name_the_files() {
        let op = exec(&["copy"], &[]);
        let a = fingerprint(&op, &[key(0)], &[("a.txt", b"1"), ("b.txt", b"2")]);
        let b = fingerprint(
            &op,
            &[key(0)],
            &[("a.txt", b"1"), ("b.txt", b"3"), ("c", b"")],
        );
        let reason = explain(&a, &b);
        assert_eq!(
            reason,
            MissReason::Changed {
                changes: vec![Change::Files {
                    changed: vec!["b.txt".into()],
                    added: vec!["c".into()],
                    removed: vec![],
                    more: 0,
                }]
            }
        );
        assert_eq!(reason.to_string(), "files: changed b.txt; added c");
    }

    /// The merge over sorted lists answers as maps of both did, for
    /// lists in any order and with a path twice (its last digest counts).
    #[test]
    fn file_changes_of_unsorted_lists_match_sorted_ones() {
        let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, Digest)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), Digest::of(b.as_bytes())))
                .collect()
        };
        let previous = pairs(&[("c", "1"), ("a", "1"), ("b", "1"), ("a", "2"), ("e", "1")]);
        let current = pairs(&[("d", "1"), ("a", "2"), ("b", "2"), ("c", "1")]);
        assert_eq!(
            file_changes(
                &FileDigests::from_vec(previous.clone()),
                &FileDigests::from_vec(current)
            ),
            Some(Change::Files {
                changed: vec!["b".into()],
                added: vec!["d".into()],
                removed: vec!["e".into()],
                more: 0,
            })
        );
        let mut sorted = previous.clone();
        sorted.sort();
        sorted.remove(0);
        let sorted = FileDigests::from_vec(sorted);
        assert_eq!(file_changes(&sorted, &sorted), None);
        assert_eq!(
            file_changes(&FileDigests::from_vec(previous), &sorted),
            None,
            "a's last digest is 2"
        );
    }

    /// Lists spilled to disk (a large context's) are compared as lists in
    /// memory are, names listed up to the limit and the rest counted.
    #[test]
    fn file_changes_of_spilled_lists() {
        use crate::file_digests::{FileDigestsBuilder, RUN_LEN};
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let n = RUN_LEN * 2 + 5;
        let build = |edit: &dyn Fn(usize) -> Option<u8>| {
            let mut b = FileDigestsBuilder::new(Some(dir));
            for i in (0..n).rev() {
                if let Some(v) = edit(i) {
                    b.push(format!("f{i:06}"), Digest::of(&[v]));
                }
            }
            b.finish()
        };
        let previous = build(&|_| Some(0));
        // 12 changed, the first 3 removed, one added past the end.
        let current = build(&|i| match i {
            0..3 => None,
            i if i % 1000 == 7 => Some(1),
            _ => Some(0),
        });
        let mut b = FileDigestsBuilder::new(Some(dir));
        b.extend_from(&current).unwrap();
        b.push("zz".into(), Digest::of(b"new"));
        let current = b.finish();
        assert!(previous.is_spilled() && current.is_spilled());
        let Some(Change::Files {
            changed,
            added,
            removed,
            more,
        }) = file_changes(&previous, &current)
        else {
            panic!("files differ")
        };
        let changes = n.div_ceil(1000);
        assert_eq!(changed.len(), MAX_FILES_LISTED);
        assert_eq!(changed[0], "f000007");
        assert_eq!(added, ["zz"]);
        assert_eq!(removed, ["f000000", "f000001", "f000002"]);
        assert_eq!(more, changes - MAX_FILES_LISTED);
        assert_eq!(file_changes(&current, &current), None);
    }

    #[test]
    fn many_files_are_counted_beyond_the_limit() {
        let op = exec(&["copy"], &[]);
        let names: Vec<String> = (0..15).map(|i| format!("f{i:02}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let reason = explain(
            &fingerprint(&op, &[key(0)], &[]),
            &fingerprint(&op, &[key(0)], &files),
        );
        let MissReason::Changed { changes } = reason else {
            panic!()
        };
        let Change::Files { added, more, .. } = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!((added.len(), *more), (MAX_FILES_LISTED, 5));
    }

    #[test]
    fn identical_fingerprints_are_unchanged_and_round_trip_through_json() {
        let a = fingerprint(&exec(&["sh"], &["A=1"]), &[key(0)], &[("x", b"1")]);
        assert_eq!(explain(&a, &a.clone()), MissReason::Unchanged);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<StepFingerprint>(&json).unwrap(), a);
        // Files are saved as [path, "sha256:…"] pairs, as before digests
        // were held as such: records of earlier builds still read.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["files"],
            serde_json::json!([["x", Digest::of(b"1").to_string()]])
        );
        let mut bad = v.clone();
        bad["files"][0][1] = "md5:00".into();
        assert!(serde_json::from_value::<StepFingerprint>(bad).is_err());
        let reason = explain(
            &a,
            &fingerprint(&exec(&["sh"], &["A=2"]), &[key(0)], &[("x", b"1")]),
        );
        let v = serde_json::to_value(&reason).unwrap();
        assert_eq!(v["reason"], "changed");
        assert_eq!(v["changes"][0]["what"], "env");
    }
}
