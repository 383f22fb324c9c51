//! Planning of build inputs: `RUN --mount=type=ssh`, named contexts
//! (`--build-context`, BuildKit's replacement rules) and `ADD` of git
//! repositories.

use rbuild_solver::digest::Digest;
use rbuild_solver::image_config::ImageConfig;
use rbuild_solver::op::{CopySource, ExecMountKind, GitOp, Op};
use rbuild_solver::plan::{
    ImageResolver, NamedContext, NamedContexts, Plan, PlanError, PlanRequest, Platform,
    ResolvedImage, plan_with_contexts,
};

#[derive(Debug, thiserror::Error)]
#[error("image {0} not found")]
struct NotFound(String);

/// Knows `busybox` and `pinned/base:1`, each with its own digest.
struct Resolver;

impl ImageResolver for Resolver {
    type Error = NotFound;
    fn resolve(&self, reference: &str, _: &Platform) -> Result<ResolvedImage, NotFound> {
        match reference {
            "busybox" | "pinned/base:1" => Ok(ResolvedImage {
                reference: reference.to_string(),
                digest: Digest::of(reference.as_bytes()),
                config: ImageConfig::default(),
            }),
            other => Err(NotFound(other.to_string())),
        }
    }
}

fn plan(src: &str, named: &NamedContexts) -> Result<Plan, PlanError> {
    let df = rbuild_parser::parse(src.as_bytes()).expect("dockerfile parses");
    plan_with_contexts(&df, &PlanRequest::default(), &Resolver, named)
}

fn ops(p: &Plan) -> Vec<&Op> {
    let needed = p.graph.needed_by(&[p.target]);
    (0..p.graph.len())
        .filter(|i| needed[*i])
        .map(|i| p.graph.op(p.graph.step_at(i)))
        .collect()
}

#[test]
fn ssh_mounts_get_buildkit_defaults_and_numbered_sockets() {
    let p = plan(
        "FROM busybox\nRUN --mount=type=ssh --mount=type=ssh,id=gh,required,mode=0644,uid=7 ssh-add -l\n",
        &NamedContexts::new(),
    )
    .unwrap();
    let Op::Exec(e) = p.graph.op(p.target) else {
        panic!("a RUN")
    };
    let ssh: Vec<_> = e
        .mounts
        .iter()
        .map(|m| match &m.kind {
            ExecMountKind::Ssh {
                id,
                required,
                mode,
                uid,
                ..
            } => (m.target.as_str(), id.as_str(), *required, *mode, *uid),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ssh,
        [
            ("/run/buildkit/ssh_agent.0", "default", false, 0o600, 0),
            ("/run/buildkit/ssh_agent.1", "gh", true, 0o644, 7),
        ]
    );
    // No socket path (only ids) in the key: the same Dockerfile plans the
    // same key whatever agent a build is given.
    let e = plan(
        "FROM busybox\nRUN --mount=type=ssh,from=x true\n",
        &NamedContexts::new(),
    );
    assert!(e.is_err());
}

#[test]
fn named_contexts_replace_stages_then_images_as_buildkit() {
    let mut named = NamedContexts::new();
    named.insert("deps".into(), NamedContext::Local);
    named.insert("alpine".into(), NamedContext::Image("pinned/base:1".into()));
    // `FROM alpine:latest` looks `alpine` up; the stage named `deps` is
    // replaced whole (its RUN is not planned); `COPY --from=deps` then
    // reads the context.
    let p = plan(
        "FROM busybox AS deps\nRUN never\nFROM alpine:latest\nCOPY --from=deps /x /x\n",
        &named,
    )
    .unwrap();
    let planned = ops(&p);
    assert!(
        planned.iter().all(|o| !matches!(o, Op::Exec(_))),
        "the replaced stage's RUN is not planned: {planned:?}"
    );
    assert!(
        planned
            .iter()
            .any(|o| matches!(o, Op::Local(l) if l.name == "deps"))
    );
    assert!(
        planned
            .iter()
            .any(|o| matches!(o, Op::Image(i) if i.digest == Digest::of(b"pinned/base:1")))
    );
    // A context no stage is named after is read in place by COPY and
    // RUN mounts: no step of its own, only the selected files keyed.
    let mut lib = NamedContexts::new();
    lib.insert("lib".into(), NamedContext::Local);
    let p = plan(
        "FROM busybox\nCOPY --from=lib a /a\nRUN --mount=from=lib,target=/l,source=sub make\n",
        &lib,
    )
    .unwrap();
    assert!(!ops(&p).iter().any(|o| matches!(o, Op::Local(_))));
    assert!(
        ops(&p)
            .iter()
            .any(|o| matches!(o, Op::Copy(c) if c.source == CopySource::Named("lib".into())))
    );
    let Op::Exec(e) = p.graph.op(p.target) else {
        panic!("a RUN")
    };
    assert!(matches!(
        &e.mounts[0].kind,
        ExecMountKind::Named { name, source, .. } if name == "lib" && source == "sub"
    ));
    // Without the contexts the image name fails to resolve.
    assert!(plan("FROM alpine\n", &NamedContexts::new()).is_err());
    // An earlier stage wins over a context for `--from` only when the
    // context does not name the stage itself: a stage `lib` is used.
    let mut lib = NamedContexts::new();
    lib.insert("other".into(), NamedContext::Local);
    let p = plan(
        "FROM busybox AS lib\nRUN build\nFROM busybox\nCOPY --from=lib /a /a\n",
        &lib,
    )
    .unwrap();
    assert!(ops(&p).iter().any(|o| matches!(o, Op::Exec(_))));
}

#[test]
fn add_of_a_git_url_is_a_git_step_copied_from() {
    let p = plan(
        "FROM busybox\nADD --keep-git-dir https://example.com/r.git#v1:sub /src/\n",
        &NamedContexts::new(),
    )
    .unwrap();
    let git: Vec<&GitOp> = ops(&p)
        .into_iter()
        .filter_map(|o| match o {
            Op::Git(g) => Some(g),
            _ => None,
        })
        .collect();
    assert_eq!(
        git,
        [&GitOp {
            remote: "https://example.com/r.git".into(),
            reference: "v1".into(),
            subdir: "sub".into(),
            keep_git_dir: true,
            checksum: None,
        }]
    );
    let Op::Copy(c) = p.graph.op(p.target) else {
        panic!("a copy")
    };
    assert_eq!(c.source, CopySource::Input);
    assert_eq!(c.sources, ["/"]);
    // --checksum of a git source is a commit; a sha256 digest is refused.
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let p = plan(
        &format!("FROM busybox\nADD --checksum={commit} git@example.com:r.git#main /s/\n"),
        &NamedContexts::new(),
    )
    .unwrap();
    assert!(
        ops(&p)
            .iter()
            .any(|o| matches!(o, Op::Git(g) if g.checksum.as_deref() == Some(commit)))
    );
    let Err(e) = plan(
        &format!(
            "FROM busybox\nADD --checksum=sha256:{} git://h/r#main /s/\n",
            "a".repeat(64)
        ),
        &NamedContexts::new(),
    ) else {
        panic!("a sha256 checksum of a git source is refused")
    };
    assert!(e.to_string().contains("commit"), "{e}");
}
