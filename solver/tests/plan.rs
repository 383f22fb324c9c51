//! The planner against a fake image resolver: Dockerfile semantics as a
//! user of `docker build` would notice them (what runs, with which env,
//! what the image config and history say).

use std::cell::RefCell;
use std::collections::BTreeMap;

use rbuild_solver::digest::Digest;
use rbuild_solver::image_config::{History, ImageConfig};
use rbuild_solver::op::{CopySource, ExecMountKind, ExecNetwork, ExecOp, Op};
use rbuild_solver::plan::{
    ImageResolver, Plan, PlanError, PlanRequest, Platform, ResolvedImage, plan,
};
use rbuild_solver::{KeyEncoder, KeyedOp, StepId};

#[derive(Debug, thiserror::Error)]
#[error("image not found: {0}")]
struct NotFound(String);

/// A map of reference → config; counts lookups.
#[derive(Default)]
struct FakeResolver {
    images: BTreeMap<String, ImageConfig>,
    calls: RefCell<Vec<String>>,
}

impl FakeResolver {
    fn with(mut self, reference: &str, config: serde_json::Value) -> Self {
        let config: ImageConfig = serde_json::from_value(config).unwrap();
        self.images.insert(reference.to_string(), config);
        self
    }
}

impl ImageResolver for FakeResolver {
    type Error = NotFound;
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<ResolvedImage, NotFound> {
        self.calls.borrow_mut().push(reference.to_string());
        let config = self
            .images
            .get(reference)
            .cloned()
            .ok_or_else(|| NotFound(reference.to_string()))?;
        Ok(ResolvedImage {
            reference: format!("docker.io/library/{reference}"),
            digest: Digest::of(reference.as_bytes()),
            config,
        })
    }
}

fn resolver() -> FakeResolver {
    FakeResolver::default()
        .with(
            "alpine",
            serde_json::json!({
                "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C"], "Cmd": ["/bin/sh"]},
                "history": [{"created_by": "ADD rootfs"}]
            }),
        )
        .with(
            "golang",
            serde_json::json!({"config": {"Env": ["PATH=/go/bin"], "WorkingDir": "/go"}}),
        )
        .with(
            "tools",
            serde_json::json!({"config": {"Env": ["PATH=/bin"]}}),
        )
        .with(
            "onbuild-base",
            serde_json::json!({"config": {"Env": ["PATH=/bin"], "OnBuild": ["RUN echo trigger", "ENV FROM_TRIGGER=1"]}}),
        )
}

fn request() -> PlanRequest {
    PlanRequest {
        platform: Some(Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }),
        ..PlanRequest::default()
    }
}

fn with_args(args: &[(&str, &str)]) -> PlanRequest {
    let mut r = request();
    for (k, v) in args {
        r.build_args.insert(k.to_string(), v.to_string());
    }
    r
}

fn try_plan(src: &str, req: &PlanRequest) -> Result<Plan, PlanError> {
    let df = rbuild_parser::parse(src.as_bytes()).expect("dockerfile parses");
    plan(&df, req, &resolver())
}

fn plan_ok(src: &str) -> Plan {
    plan_with(src, &request())
}

fn plan_with(src: &str, req: &PlanRequest) -> Plan {
    try_plan(src, req).unwrap_or_else(|e| panic!("plan failed: {e}"))
}

/// The op of the target step.
fn target_op(p: &Plan) -> &Op {
    p.graph.op(p.target)
}

fn exec(p: &Plan, id: StepId) -> &ExecOp {
    match p.graph.op(id) {
        Op::Exec(e) => e,
        other => panic!("expected exec, got {other:?}"),
    }
}

/// Every exec op of the needed steps, in step order.
fn execs(p: &Plan) -> Vec<&ExecOp> {
    let needed = p.graph.needed_by(&[p.target]);
    (0..p.graph.len())
        .filter(|i| needed[*i])
        .filter_map(|i| match p.graph.op(p.graph.step_at(i)) {
            Op::Exec(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn created_by(p: &Plan) -> Vec<&str> {
    p.history.iter().map(|h| h.created_by.as_str()).collect()
}

fn key_of(p: &Plan, id: StepId) -> String {
    let op = p.graph.op(id);
    let mut enc = KeyEncoder::new(op.kind());
    op.encode(&mut enc);
    for i in p.graph.inputs(id) {
        enc.str("input", &key_of(p, *i));
    }
    enc.finish().digest().to_string()
}

#[test]
fn multi_stage_by_name_and_index() {
    let p = plan_ok(
        "FROM golang AS Build\nRUN go build -o /out/app\nFROM alpine\nCOPY --from=build /out/app /usr/bin/\nCOPY --from=0 /out/app /usr/bin/app2\n",
    );
    let Op::Copy(c) = target_op(&p) else { panic!() };
    assert_eq!(c.source, CopySource::Input);
    assert_eq!(c.sources, ["/out/app"]);
    assert_eq!(c.dest, "/usr/bin/app2");
    let inputs = p.graph.inputs(p.target);
    let build_run = inputs[1];
    assert_eq!(exec(&p, build_run).args[2], "go build -o /out/app");
    // Both copies read the same stage result.
    let first_copy = inputs[0];
    assert_eq!(p.graph.inputs(first_copy)[1], build_run);
    assert_eq!(p.target_stage, "1");
    assert_eq!(p.steps[build_run.index()].stage, "build");
    assert_eq!(p.steps[build_run.index()].position, (2, 2));
    assert_eq!(p.steps[build_run.index()].line, 2);
    assert_eq!(p.steps[p.target.index()].position, (3, 3));
    assert_eq!(p.steps[p.target.index()].lineage, "1/3/COPY");
}

/// The plan step whose instruction text contains `needle`.
fn all_steps_with(p: &Plan, needle: &str) -> usize {
    (0..p.steps.len())
        .find(|&i| p.steps[i].instruction.contains(needle))
        .unwrap_or_else(|| panic!("no step shows {needle:?}"))
}

#[test]
fn steps_are_numbered_and_named_as_buildkit_shows_them() {
    // Only a pulled base and RUN/COPY/ADD/WORKDIR are numbered, so the
    // last step of each stage reads n/n; variables are expanded in the
    // names (RUN keeps quotes and unset variables).
    let p = plan_ok(
        "FROM alpine AS base\nENV APP_HOME=/srv/app\nARG V=1.2\nLABEL a=b\nWORKDIR ${APP_HOME}\n\
         EXPOSE 80\nrun echo \"$V\" $UNSET ${APP_HOME}\nCOPY x $APP_HOME/\nWORKDIR /\nUSER nobody\n\
         FROM base AS mid\nRUN true\nFROM scratch\nCOPY --from=mid /srv/app /\n",
    );
    let shown = |needle: &str| {
        let i = all_steps_with(&p, needle);
        (p.steps[i].position, p.steps[i].instruction.clone())
    };
    assert_eq!(shown("FROM alpine"), ((1, 5), "FROM alpine AS base".into()));
    assert_eq!(shown("WORKDIR /srv"), ((2, 5), "WORKDIR /srv/app".into()));
    assert_eq!(
        shown("echo"),
        ((3, 5), "RUN echo \"1.2\" $UNSET /srv/app".into())
    );
    assert_eq!(shown("COPY x"), ((4, 5), "COPY x /srv/app/".into()));
    // A stage built on another has no FROM step of its own.
    assert_eq!(shown("RUN true"), ((1, 1), "RUN true".into()));
    assert_eq!(
        shown("COPY --from"),
        ((1, 1), "COPY --from=mid /srv/app /".into())
    );
}

#[test]
fn from_stage_inherits_its_config() {
    let p = plan_ok("FROM golang AS base\nENV A=1\nWORKDIR src\nFROM base\nRUN make\n");
    let e = exec(&p, p.target);
    assert_eq!(e.cwd, "/go/src");
    assert_eq!(e.env, ["PATH=/go/bin", "A=1"]);
    assert_eq!(p.config.config.working_dir.as_deref(), Some("/go/src"));
    assert_eq!(
        created_by(&p),
        [
            "ENV A=1",
            "WORKDIR /go/src",
            "RUN /bin/sh -c make # buildkit"
        ]
    );
}

#[test]
fn target_stops_at_its_stage_and_skips_unreachable_images() {
    let src = "FROM golang AS build\nRUN build\nFROM tools AS unused\nRUN x\nFROM alpine AS final\nRUN final\n";
    let r = resolver();
    let df = rbuild_parser::parse(src.as_bytes()).unwrap();
    let mut req = request();
    req.target = Some("BUILD".into());
    let p = plan(&df, &req, &r).unwrap();
    assert_eq!(p.target_stage, "build");
    assert_eq!(exec(&p, p.target).args[2], "build");
    assert_eq!(
        *r.calls.borrow(),
        ["golang"],
        "no image resolved for other stages"
    );
    let needed = p.graph.needed_by(&[p.target]);
    assert!(needed.iter().all(|n| *n), "every planned step is needed");

    req.target = Some("nope".into());
    assert!(matches!(
        plan(&df, &req, &r),
        Err(PlanError::UnknownTarget { target }) if target == "nope"
    ));

    // Building the last stage leaves the unreachable ones out.
    let r = resolver();
    let p = plan(&df, &request(), &r).unwrap();
    assert_eq!(*r.calls.borrow(), ["alpine"]);
    let needed = p.graph.needed_by(&[p.target]);
    assert_eq!(needed.iter().filter(|n| **n).count(), 2);
}

#[test]
fn global_arg_in_from_and_build_arg_override() {
    let src = "ARG BASE=alpine\nARG TAG\nFROM ${BASE}\nRUN echo $BASE\n";
    let p = plan_ok(src);
    let Op::Image(img) = p.graph.op(p.graph.inputs(p.target)[0]) else {
        panic!()
    };
    assert_eq!(img.reference, "docker.io/library/alpine");
    // Not re-declared in the stage: not in RUN's env.
    assert!(
        !exec(&p, p.target)
            .env
            .iter()
            .any(|e| e.starts_with("BASE="))
    );

    let p = plan_with(src, &with_args(&[("BASE", "golang")]));
    let Op::Image(img) = p.graph.op(p.graph.inputs(p.target)[0]) else {
        panic!()
    };
    assert_eq!(img.reference, "docker.io/library/golang");

    // A build arg never declared does not reach FROM.
    let p = try_plan("FROM alpine${SUFFIX}\n", &with_args(&[("SUFFIX", "x")])).unwrap();
    assert!(matches!(target_op(&p), Op::Image(i) if i.reference.ends_with("/alpine")));
}

#[test]
fn arg_scoping_per_stage() {
    let src = "ARG V=global\nFROM alpine AS a\nARG V\nRUN echo a\nFROM alpine\nRUN echo b\n";
    let p = plan_with(src, &request_target("a"));
    assert!(exec(&p, p.target).env.contains(&"V=global".to_string()));
    // A new stage starts without args.
    let p = plan_ok(src);
    assert!(!exec(&p, p.target).env.iter().any(|e| e.starts_with("V=")));
    // --build-arg overrides a declared arg's default, and defaults expand.
    let p = plan_with(
        "FROM alpine\nARG A=1\nARG B=${A}-x\nRUN echo\n",
        &with_args(&[("A", "9")]),
    );
    let e = exec(&p, p.target);
    assert!(e.env.ends_with(&["A=9".to_string(), "B=9-x".to_string()]));
    assert_eq!(p.history[0].created_by, "ARG A=9");
    assert_eq!(p.history[1].created_by, "ARG B=9-x");
    assert_eq!(
        p.history[2].created_by,
        "RUN |2 A=9 B=9-x /bin/sh -c echo # buildkit"
    );
}

fn request_target(t: &str) -> PlanRequest {
    let mut r = request();
    r.target = Some(t.into());
    r
}

#[test]
fn env_overrides_arg() {
    let p = plan_with(
        "FROM alpine\nARG X=arg\nENV X=env\nARG Y=$X\nWORKDIR /$X\nRUN echo\n",
        &with_args(&[("X", "cli")]),
    );
    let e = exec(&p, p.target);
    assert_eq!(e.cwd, "/env");
    assert!(e.env.contains(&"X=env".to_string()));
    assert!(!e.env.contains(&"X=cli".to_string()));
    assert!(e.env.contains(&"Y=env".to_string()));
    assert!(
        p.history
            .last()
            .unwrap()
            .created_by
            .starts_with("RUN |2 X=env Y=env ")
    );
}

#[test]
fn env_pairs_expand_with_the_previous_env() {
    let p = plan_ok("FROM alpine\nENV A=1\nENV A=2 B=$A\nRUN x\n");
    let e = exec(&p, p.target);
    assert_eq!(e.env, ["PATH=/usr/bin:/bin", "LANG=C", "A=2", "B=1"]);
}

#[test]
fn proxy_args_only_in_proxy_env() {
    let req = with_args(&[("HTTP_PROXY", "http://p:3128"), ("no_proxy", "x")]);
    let p = plan_with("FROM alpine\nRUN apk add curl\n", &req);
    let e = exec(&p, p.target);
    // Regression: BuildKit gives RUN both cases of each proxy variable;
    // rbuild gave only the one named on the command line.
    assert_eq!(
        e.proxy_env,
        [
            "HTTP_PROXY=http://p:3128",
            "http_proxy=http://p:3128",
            "NO_PROXY=x",
            "no_proxy=x"
        ]
    );
    assert!(!e.env.iter().any(|v| v.contains("3128")));
    assert!(!p.history[0].created_by.contains("3128"));
    assert!(p.warnings.is_empty(), "predefined args are never unused");
    // The key does not change with the proxy.
    let q = plan_ok("FROM alpine\nRUN apk add curl\n");
    assert_eq!(key_of(&p, p.target), key_of(&q, q.target));
    // Declared, it is an ordinary build arg.
    let p = plan_with("FROM alpine\nARG HTTP_PROXY\nRUN x\n", &req);
    let e = exec(&p, p.target);
    assert!(e.env.contains(&"HTTP_PROXY=http://p:3128".to_string()));
    assert_eq!(
        e.proxy_env,
        ["http_proxy=http://p:3128", "NO_PROXY=x", "no_proxy=x"]
    );
    // Both cases given: the upper-case value, under both names.
    let both = with_args(&[("HTTPS_PROXY", "http://u"), ("https_proxy", "http://l")]);
    let p = plan_with("FROM alpine\nRUN x\n", &both);
    assert_eq!(
        exec(&p, p.target).proxy_env,
        ["HTTPS_PROXY=http://u", "https_proxy=http://u"]
    );
}

#[test]
fn unused_build_arg_warns() {
    let p = plan_with(
        "FROM alpine\nARG USED\nRUN x\n",
        &with_args(&[("USED", "1"), ("UNUSED", "2")]),
    );
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].message.contains("[UNUSED]"));
    // Declared only in a stage the build does not use: still unused.
    let p = plan_with(
        "FROM alpine AS other\nARG ONLY_OTHER\nFROM alpine\nRUN x\n",
        &with_args(&[("ONLY_OTHER", "1")]),
    );
    assert_eq!(p.warnings.len(), 1);
}

#[test]
fn platform_args() {
    let mut req = request();
    req.platform = Some(Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        variant: Some("v8".into()),
    });
    let p = plan_with(
        "FROM alpine\nRUN echo $TARGETARCH\nARG TARGETARCH\nARG TARGETPLATFORM\nRUN echo\n",
        &req,
    );
    let all = execs(&p);
    assert!(!all[0].env.iter().any(|e| e.starts_with("TARGET")));
    assert!(all[1].env.contains(&"TARGETARCH=arm64".to_string()));
    assert!(
        all[1]
            .env
            .contains(&"TARGETPLATFORM=linux/arm64/v8".to_string())
    );
    assert_eq!(p.config.architecture, "arm64");
    assert_eq!(p.config.variant.as_deref(), Some("v8"));
    assert_eq!(p.config.os, "linux");
    // Usable in FROM without declaration.
    let r = FakeResolver::default().with("img-arm64", serde_json::json!({}));
    let df = rbuild_parser::parse(b"FROM img-$TARGETARCH\n").unwrap();
    plan(&df, &req, &r).unwrap();
}

#[test]
fn shell_form_uses_shell_and_exec_form_does_not() {
    let p = plan_ok(
        "FROM alpine\nRUN a\nSHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]\nRUN b | c\nRUN [\"ls\", \"-l\"]\n",
    );
    let all = execs(&p);
    assert_eq!(all[0].args, ["/bin/sh", "-c", "a"]);
    assert_eq!(all[1].args, ["/bin/bash", "-eo", "pipefail", "-c", "b | c"]);
    assert_eq!(all[2].args, ["ls", "-l"]);
    assert_eq!(
        p.config.config.shell.as_deref().unwrap(),
        ["/bin/bash", "-eo", "pipefail", "-c"]
    );
    assert_eq!(p.history[1].created_by, "SHELL [/bin/bash -eo pipefail -c]");
    assert_eq!(p.history[3].created_by, "RUN ls -l # buildkit");
}

#[test]
fn heredoc_runs() {
    let p = plan_ok(
        "FROM alpine\nRUN <<EOF\necho hi\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN cat <<A > /x\nfoo\nA\n",
    );
    let all = execs(&p);
    assert_eq!(all[0].args, ["/bin/sh", "-c", "echo hi\n"]);
    assert!(all[0].mounts.is_empty());
    assert_eq!(all[1].args, ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    assert_eq!(all[1].mounts[0].target, "/dev/pipes/EOF");
    assert_eq!(
        all[1].mounts[0].kind,
        ExecMountKind::File {
            content: "#!/usr/bin/env python3\nprint(1)\n".into(),
            mode: 0o755
        }
    );
    assert_eq!(all[2].args, ["/bin/sh", "-c", "cat <<A > /x\nfoo\nA"]);
}

#[test]
fn copy_dest_against_workdir() {
    let p = plan_ok(
        "FROM alpine\nCOPY a rel\nCOPY a dir/\nWORKDIR /app\nCOPY a b ./\nCOPY x .\nCOPY y sub/\nCOPY z /abs\n",
    );
    let needed = p.graph.needed_by(&[p.target]);
    let dests: Vec<String> = (0..p.graph.len())
        .filter(|i| needed[*i])
        .filter_map(|i| match p.graph.op(p.graph.step_at(i)) {
            Op::Copy(c) => Some(c.dest.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        dests,
        ["/rel", "/dir/", "/app/", "/app/", "/app/sub/", "/abs"]
    );
    assert_eq!(p.history[0].created_by, "COPY a rel # buildkit");
    assert_eq!(p.history[3].created_by, "COPY a b ./ # buildkit");
    assert!(p.history[0].layer_step.is_some());
}

#[test]
fn copy_from_image_and_errors() {
    let p = plan_ok("FROM alpine\nCOPY --from=tools /bin/x /bin/\n");
    let Op::Copy(c) = target_op(&p) else { panic!() };
    assert_eq!(c.source, CopySource::Input);
    let from = p.graph.inputs(p.target)[1];
    assert!(matches!(p.graph.op(from), Op::Image(i) if i.reference.ends_with("/tools")));

    let e = try_plan("FROM alpine\n\nCOPY --from=nosuch /x /y\n", &request())
        .err()
        .expect("planning fails");
    assert!(matches!(e, PlanError::Resolve { line: 3, .. }), "{e}");
    assert!(e.to_string().starts_with("line 3:"));

    let e = try_plan(
        "FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\n",
        &request_target("a"),
    )
    .err()
    .expect("planning fails");
    assert!(matches!(e, PlanError::Invalid { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("circular dependency"), "{e}");

    let e = try_plan("FROM alpine\nCOPY --from=0 /x /y\n", &request())
        .err()
        .expect("planning fails");
    assert!(matches!(e, PlanError::Invalid { line: 2, .. }), "{e}");
}

#[test]
fn copy_heredoc_and_chown_expand() {
    let p = plan_ok("FROM alpine\nARG U=app\nCOPY --chown=$U:$U <<EOF /etc/x\nuser=$U\nEOF\n");
    let Op::Copy(c) = target_op(&p) else { panic!() };
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(
        c.source,
        CopySource::Inline(vec![("EOF".into(), "user=app\n".into())])
    );
    assert_eq!(p.history[1].created_by, "COPY <<EOF /etc/x # buildkit");
}

#[test]
fn copy_link_is_scratch_copy_merge() {
    let p = plan_ok("FROM alpine\nCOPY --link a /a\n");
    assert_eq!(target_op(&p), &Op::Merge);
    let inputs = p.graph.inputs(p.target);
    assert!(matches!(p.graph.op(inputs[0]), Op::Image(_)));
    let Op::Copy(c) = p.graph.op(inputs[1]) else {
        panic!()
    };
    assert!(c.link);
    assert_eq!(
        p.graph.op(p.graph.inputs(inputs[1])[0]),
        &Op::Scratch,
        "the copy does not depend on the stage below"
    );
    // So its key is the same on another base.
    let q = plan_ok("FROM golang\nCOPY --link a /a\n");
    let q_copy = q.graph.inputs(q.target)[1];
    assert_eq!(key_of(&p, inputs[1]), key_of(&q, q_copy));
}

#[test]
fn run_mounts() {
    let p = plan_ok(
        "FROM alpine\nWORKDIR /src\nARG CACHE=/root/.cache\nRUN --mount=type=cache,target=$CACHE --mount=type=cache,target=rel,id=go,sharing=locked,mode=0700 --mount=type=secret,id=tok --mount=type=bind,from=tools,target=/t --mount=type=bind,source=ctx,target=/c,rw x\n",
    );
    let e = exec(&p, p.target);
    let m = &e.mounts;
    assert_eq!(m[0].target, "/root/.cache");
    assert!(
        matches!(&m[0].kind, ExecMountKind::Cache { id, mode: 0o755, readonly: false, seed: None, .. } if id == "/root/.cache")
    );
    assert_eq!(m[1].target, "/src/rel");
    assert!(matches!(&m[1].kind, ExecMountKind::Cache { id, mode: 0o700, .. } if id == "go"));
    assert_eq!(m[2].target, "/run/secrets/tok");
    assert!(
        matches!(&m[2].kind, ExecMountKind::Secret { id, mode: 0o400, required: false, .. } if id == "tok")
    );
    assert!(
        matches!(&m[3].kind, ExecMountKind::Input { input: 1, source, readonly: true } if source == "/")
    );
    let tools = p.graph.inputs(p.target)[1];
    assert!(matches!(p.graph.op(tools), Op::Image(i) if i.reference.ends_with("/tools")));
    assert!(
        matches!(&m[4].kind, ExecMountKind::Context { source, readonly: false } if source == "ctx")
    );
    // Secrets never reach history.
    assert!(!p.history.last().unwrap().created_by.contains("secret"));
}

#[test]
fn deferred_mount_options_are_checked_after_expansion() {
    let p = plan_ok("FROM alpine\nARG M=0700\nRUN --mount=type=cache,target=/c,mode=$M x\n");
    assert!(matches!(
        exec(&p, p.target).mounts[0].kind,
        ExecMountKind::Cache { mode: 0o700, .. }
    ));
    let e = try_plan(
        "FROM alpine\nARG M=bad\nRUN --mount=type=cache,target=/c,mode=$M x\n",
        &request(),
    )
    .err()
    .expect("planning fails");
    assert!(matches!(e, PlanError::Invalid { line: 3, .. }), "{e}");
}

#[test]
fn run_network_and_security() {
    let mut req = request();
    req.network = ExecNetwork::None;
    let p = plan_with(
        "FROM alpine\nRUN a\nRUN --network=host b\nRUN --network=default c\n",
        &req,
    );
    let nets: Vec<_> = execs(&p).iter().map(|e| e.network).collect();
    assert_eq!(
        nets,
        [ExecNetwork::None, ExecNetwork::Host, ExecNetwork::None]
    );
    let e = try_plan("FROM alpine\nRUN --security=insecure x\n", &request())
        .err()
        .expect("planning fails");
    assert!(matches!(e, PlanError::Invalid { line: 2, .. }));
    assert!(e.to_string().contains("not supported"));
}

#[test]
fn onbuild_triggers_fire_after_from() {
    let p = plan_ok("FROM onbuild-base\nONBUILD RUN own\nRUN after\n");
    let all = execs(&p);
    assert_eq!(all[0].args[2], "echo trigger");
    assert!(all[1].env.contains(&"FROM_TRIGGER=1".to_string()));
    // Inherited triggers are cleared; the stage's own are kept.
    assert_eq!(p.config.config.on_build.as_deref().unwrap(), ["RUN own"]);
    assert_eq!(
        created_by(&p),
        [
            "RUN /bin/sh -c echo trigger # buildkit",
            "ENV FROM_TRIGGER=1",
            "ONBUILD RUN own",
            "RUN /bin/sh -c after # buildkit"
        ]
    );
    // BuildKit numbers the pulled base, each trigger, and RUN after; not
    // the stage's own ONBUILD.
    let info = &p.steps[p.target.index()];
    assert_eq!(info.position, (4, 4));
    assert_eq!(info.instruction, "RUN after");
    assert_eq!(
        p.steps[all_steps_with(&p, "echo trigger")].instruction,
        "ONBUILD RUN echo trigger"
    );
    assert_eq!(p.steps[all_steps_with(&p, "echo trigger")].position, (2, 4));
    // And a stage built on this one runs the stage's own trigger.
    let p = plan_ok("FROM alpine AS base\nONBUILD RUN own\nFROM base\n");
    assert_eq!(exec(&p, p.target).args[2], "own");
    assert_eq!(p.config.config.on_build, None);
}

#[test]
fn entrypoint_resets_inherited_cmd_only() {
    let p = plan_ok("FROM alpine\nENTRYPOINT [\"/app\"]\n");
    assert_eq!(p.config.config.cmd, None);
    assert_eq!(p.config.config.entrypoint.as_deref().unwrap(), ["/app"]);
    let p = plan_ok("FROM alpine\nCMD [\"--help\"]\nENTRYPOINT /app run\n");
    assert_eq!(p.config.config.cmd.as_deref().unwrap(), ["--help"]);
    assert_eq!(
        p.config.config.entrypoint.as_deref().unwrap(),
        ["/bin/sh", "-c", "/app run"]
    );
    assert_eq!(
        created_by(&p),
        [
            r#"CMD ["--help"]"#,
            r#"ENTRYPOINT ["/bin/sh" "-c" "/app run"]"#
        ]
    );
}

#[test]
fn config_only_instructions_and_history() {
    let mut req = request();
    req.labels.insert("built-by".into(), "rbuild".into());
    let p = plan_with(
        "FROM alpine\nMAINTAINER me\nLABEL a=1 \"b c\"=\"d e\"\nEXPOSE 80 53/udp\nUSER app\nVOLUME /data\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=30s --retries=3 CMD curl -f x\nWORKDIR /w\nRUN x\n",
        &req,
    );
    assert_eq!(
        created_by(&p),
        [
            "MAINTAINER me",
            "LABEL a=1 b c=d e",
            "EXPOSE map[53/udp:{} 80/tcp:{}]",
            "USER app",
            "VOLUME [/data]",
            "STOPSIGNAL SIGINT",
            r#"HEALTHCHECK &{["CMD-SHELL" "curl -f x"] "30s" "0s" "0s" "0s" '\x03'}"#,
            "WORKDIR /w",
            "RUN /bin/sh -c x # buildkit",
        ]
    );
    let empty: Vec<bool> = p.history.iter().map(|h| h.layer_step.is_none()).collect();
    assert_eq!(
        empty,
        [true, true, true, true, true, true, true, false, false]
    );
    let c = &p.config.config;
    assert_eq!(p.config.author.as_deref(), Some("me"));
    assert_eq!(c.user.as_deref(), Some("app"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
    assert!(c.volumes.as_ref().unwrap().contains_key("/data"));
    let labels = c.labels.as_ref().unwrap();
    assert_eq!(labels["b c"], "d e");
    assert_eq!(labels["built-by"], "rbuild");
    let hc = c.healthcheck.as_ref().unwrap();
    assert_eq!(hc.interval, 30_000_000_000);
    assert_eq!(hc.retries, 3);
    // The base image's history is kept in the config.
    assert_eq!(
        p.config.history,
        [History {
            created_by: Some("ADD rootfs".into()),
            ..History::default()
        }]
    );
    // USER applies to RUN and WORKDIR's directory.
    assert_eq!(exec(&p, p.target).user, "app");
    let mkdir = p.graph.inputs(p.target)[0];
    assert!(matches!(p.graph.op(mkdir), Op::Mkdir(m) if m.user == "app" && m.path == "/w"));
}

#[test]
fn scratch_stage() {
    let p = plan_ok("FROM scratch\nCOPY a /\n");
    assert_eq!(p.graph.op(p.graph.inputs(p.target)[0]), &Op::Scratch);
    assert_eq!(
        p.config.config.env.as_deref().unwrap(),
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
}

#[test]
fn identical_stages_share_steps() {
    let p = plan_ok(
        "FROM alpine AS a\nRUN make\nFROM alpine AS b\nRUN make\nFROM alpine\nCOPY --from=a /x /x\nCOPY --from=b /x /y\n",
    );
    let copy_y = p.target;
    let copy_x = p.graph.inputs(copy_y)[0];
    assert_eq!(p.graph.inputs(copy_x)[1], p.graph.inputs(copy_y)[1]);
    // The shared step keeps the first stage's info.
    let shared = p.graph.inputs(copy_y)[1];
    assert_eq!(p.steps[shared.index()].stage, "a");
}

#[test]
fn plans_are_deterministic() {
    let src = "ARG V=1\nFROM alpine AS a\nARG V\nRUN --mount=type=cache,target=/c make $V\nFROM golang\nWORKDIR app\nCOPY --from=a /x .\nCOPY --link y /\nRUN go test\n";
    let req = with_args(&[("V", "2")]);
    let a = plan_with(src, &req);
    let b = plan_with(src, &req);
    assert_eq!(a.graph.len(), b.graph.len());
    for i in 0..a.graph.len() {
        let (x, y) = (a.graph.step_at(i), b.graph.step_at(i));
        assert_eq!(key_of(&a, x), key_of(&b, y));
        assert_eq!(a.steps[i], b.steps[i]);
    }
    assert_eq!(a.history, b.history);
    assert_eq!(a.config, b.config);
}

#[test]
fn expansion_errors_name_the_line() {
    let e = try_plan("FROM alpine\nWORKDIR ${NOPE:?must be set}\n", &request())
        .err()
        .expect("planning fails");
    assert!(matches!(e, PlanError::Expand { line: 2, .. }), "{e}");
}

#[test]
fn arg_defaults_see_global_args() {
    let p = plan_ok("ARG V=1\nFROM alpine\nARG W=v$V\nRUN x\n");
    assert!(exec(&p, p.target).env.contains(&"W=v1".to_string()));
    assert!(!exec(&p, p.target).env.iter().any(|e| e.starts_with("V=")));
}

#[test]
fn stage_named_like_its_base_image_uses_the_image() {
    let p = plan_ok(
        "FROM alpine AS alpine\nRUN one\nFROM alpine\nRUN two\nFROM Alpine AS x\nCOPY --from=ALPINE /a /a\n",
    );
    // The last stage's base `Alpine` names stage 0 (case-insensitive).
    let copy = p.target;
    let base = p.graph.inputs(copy)[0];
    assert_eq!(exec(&p, base).args[2], "one");
    assert_eq!(p.graph.inputs(copy)[1], base);
    // Stage 0's own `FROM alpine` is the image, not itself.
    assert!(matches!(p.graph.op(p.graph.inputs(base)[0]), Op::Image(_)));
}
