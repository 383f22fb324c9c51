//! The planner proper: walks the stages the target needs (depth first, each
//! stage once), dispatching every instruction as BuildKit's
//! `dockerfile2llb` does — ops into the graph, config-only instructions
//! into the stage's image config, one history entry per instruction.

use std::collections::{BTreeMap, BTreeSet};

use rbuild_parser::shell::{EnvLookup, Lex};
use rbuild_parser::{
    Dockerfile, Healthcheck, Instruction, InstructionKind, KeyValue, Mount, MountType, NetworkMode,
    SecurityMode, Sharing, ShellOrExec, Span,
};

use super::go_format;
use super::inputs::{NamedContext, NamedContexts, context_key, parse_git_url};
use super::paths;
use super::{
    ImageResolver, Plan, PlanError, PlanRequest, PlanWarning, PlannedHistory, Platform,
    ResolvedImage, StepInfo,
};
use crate::graph::{BuildGraph, StepId};
use crate::image_config::{EmptyObject, HealthConfig, ImageConfig};
use crate::op::{
    AddOptions, CacheSharing, CopyOp, CopySource, DEFAULT_SSH_ID, ExecMount, ExecMountKind,
    ExecNetwork, ExecOp, GitOp, ImageOp, LocalOp, MkdirOp, Op,
};

/// `PATH` of a scratch stage and of RUN steps whose image sets none
/// (BuildKit's `system.DefaultPathEnv` for Linux).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell of shell-form RUN/CMD/ENTRYPOINT when no SHELL is set.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Build args docker predefines: given with `--build-arg`, they reach RUN
/// without an ARG (outside the key and history), and are never reported
/// as unused.
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The proxy variables RUN gets from `--build-arg`s as BuildKit gives
/// them: each proxy given in either case (`HTTP_PROXY` or `http_proxy`)
/// reaches the process under both names, upper case first; when both
/// cases are given with different values the upper-case one wins (BuildKit
/// picks one of the two in map order). Names the stage declares with ARG
/// are left out: they are ordinary build args in `env` already.
fn proxy_env(
    build_args: &std::collections::BTreeMap<String, String>,
    declared: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for pair in PROXY_ARGS.chunks(2) {
        let (upper, lower) = (pair[0], pair[1]);
        let Some(value) = build_args.get(upper).or_else(|| build_args.get(lower)) else {
            continue;
        };
        for name in [upper, lower] {
            if !declared(name) {
                out.push(format!("{name}={value}"));
            }
        }
    }
    out
}

/// Where a single-heredoc RUN with a `#!` line mounts its script, as
/// BuildKit does.
const HEREDOC_SCRIPT_DIR: &str = "/dev/pipes";

/// A declared build arg: its name and value (`None`: declared, unset).
#[derive(Debug, Clone)]
struct Arg {
    name: String,
    value: Option<String>,
}

/// What expansion sees: the stage's ENV (which wins) over its args.
struct ExpandEnv<'a> {
    env: &'a [String],
    args: &'a [Arg],
}

impl EnvLookup for ExpandEnv<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.env.lookup(name).or_else(|| {
            self.args
                .iter()
                .rev()
                .find(|a| a.name == name)
                .and_then(|a| a.value.as_deref())
        })
    }
}

/// A planned stage, as later stages see it.
#[derive(Clone)]
struct StageOut {
    step: StepId,
    config: ImageConfig,
    history: Vec<PlannedHistory>,
    platform: Platform,
    /// The environment its steps saw at the end (see [`StageState::run_env`]).
    run_env: Vec<String>,
    /// Its build args in scope at the end, which a stage built on it
    /// inherits (BuildKit's `dispatchState.init`).
    args: Vec<Arg>,
}

enum Slot {
    NotPlanned,
    InProgress,
    Done(Box<StageOut>),
}

/// The state of the stage being dispatched.
struct StageState {
    index: usize,
    label: String,
    step: StepId,
    config: ImageConfig,
    history: Vec<PlannedHistory>,
    platform: Platform,
    args: Vec<Arg>,
    /// The environment RUN steps see and expansion reads: BuildKit's LLB
    /// state env. The base's config env, then every ENV and every ARG
    /// with a value, in Dockerfile order, the last one setting a name
    /// winning (so an ARG declared after an ENV of the same name wins
    /// there, though the image config keeps the ENV). A stage built on
    /// another one starts from that stage's, with its config env applied
    /// on top.
    run_env: Vec<String>,
    /// CMD was set in this stage: a later ENTRYPOINT keeps it.
    cmd_set: bool,
    /// ONBUILD triggers this stage declares (inherited ones are dropped).
    own_onbuild: Vec<String>,
    /// BuildKit's step total for the stage: the pulled base image (not
    /// `scratch`, not another stage) plus every RUN, COPY, ADD and
    /// WORKDIR, ONBUILD triggers included.
    count: usize,
    /// Steps numbered so far (the `2` of `[build 2/4]`).
    shown: usize,
}

impl StageState {
    fn expand_env(&self) -> ExpandEnv<'_> {
        ExpandEnv {
            env: &self.run_env,
            args: &self.args,
        }
    }

    fn workdir(&self) -> String {
        match self.config.config.working_dir.as_deref() {
            Some(w) if !w.is_empty() => w.to_string(),
            _ => "/".to_string(),
        }
    }

    fn user(&self) -> String {
        self.config.config.user.clone().unwrap_or_default()
    }

    fn shell(&self) -> Vec<String> {
        match &self.config.config.shell {
            Some(s) if !s.is_empty() => s.clone(),
            _ => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn record(&mut self, created_by: String, layer_step: Option<StepId>) {
        self.history.push(PlannedHistory {
            created_by,
            layer_step,
        });
    }
}

/// One instruction being dispatched: where it is, for errors and step info.
struct At<'i> {
    inst: &'i Instruction,
    info: StepInfo,
}

impl At<'_> {
    fn line(&self) -> usize {
        self.info.line
    }

    fn invalid(&self, message: impl Into<String>) -> PlanError {
        PlanError::Invalid {
            line: self.line(),
            message: message.into(),
        }
    }
}

pub(super) struct Planner<'a, R: ImageResolver> {
    df: &'a Dockerfile,
    request: &'a PlanRequest,
    resolver: &'a R,
    /// `--build-context`s by [`context_key`].
    named: &'a NamedContexts,
    platform: Platform,
    lex: Lex,
    graph: BuildGraph<Op>,
    infos: Vec<Option<StepInfo>>,
    images: BTreeMap<(String, String), ResolvedImage>,
    stages: Vec<Slot>,
    /// Global ARGs with their values, after the automatic platform args.
    globals: Vec<Arg>,
    /// Every ARG name declared globally or in a planned stage.
    declared: BTreeSet<String>,
    warnings: Vec<PlanWarning>,
}

/// Instructions BuildKit numbers in step names (`[build 2/4]`): the ones
/// that make a vertex of their own.
fn numbered(kind: &InstructionKind) -> bool {
    matches!(
        kind,
        InstructionKind::Run { .. }
            | InstructionKind::Copy { .. }
            | InstructionKind::Add { .. }
            | InstructionKind::Workdir { .. }
    )
}

/// `run make` -> `RUN make` (BuildKit upper-cases the first word only).
fn uppercase_keyword(text: &str) -> String {
    match text.split_once(' ') {
        Some((keyword, rest)) => format!("{} {rest}", keyword.to_uppercase()),
        None => text.to_uppercase(),
    }
}

fn line_of(span: Span) -> usize {
    span.start_line as usize
}

/// The automatic platform args: `TARGET*` from the platform built for,
/// `BUILD*` from the host's (where every step runs; foreign ones under
/// emulation).
fn platform_args(target: &Platform) -> Vec<Arg> {
    let build = Platform::host();
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", &build)] {
        let variant = p.variant.clone().unwrap_or_default();
        for (suffix, value) in [
            ("PLATFORM", p.to_string()),
            ("OS", p.os.clone()),
            ("ARCH", p.architecture.clone()),
            ("VARIANT", variant.clone()),
        ] {
            out.push(Arg {
                name: format!("{prefix}{suffix}"),
                value: Some(value),
            });
        }
    }
    out
}

fn is_platform_arg(name: &str) -> bool {
    ["TARGET", "BUILD"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|s| ["PLATFORM", "OS", "ARCH", "VARIANT"].contains(&s))
    })
}

/// Sets `KEY=value` in an env list, in place when the key is there
/// (docker keeps the variable's first position).
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// The args in scope, each name once (its last declaration), in the order
/// of first declaration, as BuildKit's `runCommandString` lists them.
fn dedup_args(args: &[Arg]) -> Vec<Arg> {
    let mut out: Vec<Arg> = Vec::new();
    for a in args {
        match out.iter_mut().find(|o| o.name == a.name) {
            Some(o) => o.value = a.value.clone(),
            None => out.push(a.clone()),
        }
    }
    out
}

/// Whether a shell-form command is exactly one heredoc word (`<<EOF`,
/// `<<-"EOF"`) naming `name`: then BuildKit runs the body itself.
fn is_single_heredoc(command: &str, name: &str) -> bool {
    let t = command.trim();
    let t = t.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = t.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim_start();
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return false;
    }
    rest.replace(['\'', '"'], "") == name
}

/// `nat.ParsePortSpecs` for one EXPOSE word: `80`, `80/udp`,
/// `8000-8002/tcp`, `127.0.0.1:80:80` → the container ports.
fn port_specs(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    let container = ports.rsplit(':').next().unwrap_or(ports);
    let bad = || format!("invalid containerPort: {container}");
    let (start, end) = match container.split_once('-') {
        Some((a, b)) => (a, b),
        None => (container, container),
    };
    let start: u16 = start.parse().map_err(|_| bad())?;
    let end: u16 = end.parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

impl<'a, R: ImageResolver> Planner<'a, R> {
    pub(super) fn new(
        df: &'a Dockerfile,
        request: &'a PlanRequest,
        resolver: &'a R,
        named: &'a NamedContexts,
    ) -> Result<Self, PlanError> {
        let platform = request.platform.clone().unwrap_or_else(Platform::host);
        let mut planner = Planner {
            df,
            request,
            resolver,
            named,
            lex: Lex::new(df.directives.escape_token),
            graph: BuildGraph::new(),
            infos: Vec::new(),
            images: BTreeMap::new(),
            stages: df.stages.iter().map(|_| Slot::NotPlanned).collect(),
            globals: platform_args(&platform),
            platform,
            declared: BTreeSet::new(),
            warnings: Vec::new(),
        };
        // Global ARGs: a build arg wins; a default expands with the
        // globals before it; a bare `ARG TARGETARCH` keeps the automatic
        // value.
        for inst in &df.global_args {
            for def in &inst.args {
                planner.declared.insert(def.name.clone());
                let value = if let Some(v) = request.build_args.get(&def.name) {
                    Some(v.clone())
                } else if let Some(d) = &def.default {
                    let env = ExpandEnv {
                        env: &[],
                        args: &planner.globals,
                    };
                    Some(planner.expand(d, &env, line_of(inst.span))?)
                } else {
                    planner
                        .globals
                        .iter()
                        .rev()
                        .find(|a| a.name == def.name)
                        .and_then(|a| a.value.clone())
                };
                planner.globals.push(Arg {
                    name: def.name.clone(),
                    value,
                });
            }
        }
        Ok(planner)
    }

    pub(super) fn run(mut self) -> Result<Plan, PlanError> {
        if self.df.stages.is_empty() {
            return Err(PlanError::NoStages);
        }
        let target = match &self.request.target {
            None => self.df.stages.len() - 1,
            Some(t) => self
                .stage_by_name(t, self.df.stages.len())
                .ok_or_else(|| PlanError::UnknownTarget { target: t.clone() })?,
        };
        let out = self.plan_stage(target)?;
        let mut config = out.config;
        if !self.request.labels.is_empty() {
            let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &self.request.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        config.os = out.platform.os.clone();
        config.architecture = out.platform.architecture.clone();
        config.variant = out.platform.variant.clone();
        config.rootfs.diff_ids.clear();
        for name in self.request.build_args.keys() {
            if !self.declared.contains(name)
                && !PROXY_ARGS.contains(&name.as_str())
                && !is_platform_arg(name)
            {
                self.warnings.push(PlanWarning {
                    line: None,
                    message: format!("one or more build-args [{name}] were not consumed"),
                });
            }
        }
        let steps = self
            .infos
            .into_iter()
            .map(|i| i.expect("every step is added with its info"))
            .collect();
        Ok(Plan {
            graph: self.graph,
            target: out.step,
            target_stage: self.df.stages[target]
                .name
                .clone()
                .unwrap_or_else(|| target.to_string()),
            config,
            history: out.history,
            steps,
            warnings: self.warnings,
        })
    }

    fn expand(&self, word: &str, env: &dyn EnvLookup, line: usize) -> Result<String, PlanError> {
        self.lex
            .process_word(word, env)
            .map(|e| e.value)
            .map_err(|source| PlanError::Expand {
                line,
                word: word.to_string(),
                source,
            })
    }

    /// A stage named `name` (case-insensitive) among the first `before`.
    fn stage_by_name(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_lowercase();
        self.df.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    fn add(&mut self, op: Op, inputs: &[StepId], info: &StepInfo) -> StepId {
        let id = self.graph.add(op, inputs);
        if self.infos.len() <= id.index() {
            self.infos.resize(id.index() + 1, None);
        }
        if self.infos[id.index()].is_none() {
            self.infos[id.index()] = Some(info.clone());
        }
        id
    }

    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
        line: usize,
    ) -> Result<ResolvedImage, PlanError> {
        let key = (reference.to_string(), platform.to_string());
        if let Some(found) = self.images.get(&key) {
            return Ok(found.clone());
        }
        let resolved =
            self.resolver
                .resolve(reference, platform)
                .map_err(|e| PlanError::Resolve {
                    line,
                    reference: reference.to_string(),
                    source: Box::new(e),
                })?;
        self.images.insert(key, resolved.clone());
        Ok(resolved)
    }

    fn image_step(
        &mut self,
        resolved: &ResolvedImage,
        platform: &Platform,
        info: &StepInfo,
    ) -> StepId {
        let op = Op::Image(ImageOp {
            reference: resolved.reference.clone(),
            digest: resolved.digest,
            platform: platform.to_string(),
        });
        self.add(op, &[], info)
    }

    /// The step a `--from` (COPY, RUN mount) of stage `current` reads: an
    /// earlier stage by name or index, else an image.
    fn source_step(
        &mut self,
        from: &str,
        st: &StageState,
        at: &At<'_>,
    ) -> Result<StepId, PlanError> {
        let n = self.df.stages.len();
        let by_index = from.parse::<usize>().ok().filter(|i| *i < n);
        if let Some(j) = self.stage_by_name(from, n).or(by_index) {
            if j >= st.index {
                return Err(at.invalid(format!(
                    "circular dependency detected on stage: {from} (a stage can only use stages defined before it)"
                )));
            }
            return Ok(self.plan_stage(j)?.step);
        }
        if let Some((step, _)) = self.named_step(from, &st.platform, at.line(), &at.info)? {
            return Ok(step);
        }
        let resolved = self.resolve(from, &st.platform, at.line())?;
        Ok(self.image_step(&resolved, &st.platform, &at.info))
    }

    /// The key of the named local context a `--from=NAME` reads in place:
    /// only when no stage has the name (a stage wins, and a context of a
    /// stage's name replaces that stage through [`Self::plan_stage`]).
    fn named_local(&self, from: &str) -> Option<String> {
        let n = self.df.stages.len();
        let is_stage = self.stage_by_name(from, n).is_some()
            || from.parse::<usize>().ok().is_some_and(|i| i < n);
        if is_stage {
            return None;
        }
        let key = context_key(from);
        matches!(self.named.get(&key), Some(NamedContext::Local)).then_some(key)
    }

    /// The step and image config of the named context `name`, if there
    /// is one: an image's root filesystem and config, or a directory's
    /// files on an empty config.
    fn named_step(
        &mut self,
        name: &str,
        platform: &Platform,
        line: usize,
        info: &StepInfo,
    ) -> Result<Option<(StepId, ImageConfig)>, PlanError> {
        let key = context_key(name);
        let Some(named) = self.named.get(&key) else {
            return Ok(None);
        };
        Ok(Some(match named {
            NamedContext::Image(reference) => {
                let resolved = self.resolve(reference, platform, line)?;
                (self.image_step(&resolved, platform, info), resolved.config)
            }
            NamedContext::Resolved(resolved) => (
                self.image_step(resolved, platform, info),
                resolved.config.clone(),
            ),
            NamedContext::Local => {
                let mut config = ImageConfig::default();
                config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
                // Its own lineage: the instruction reading it is another
                // step, with its own previous keys.
                let mut info = info.clone();
                info.lineage.push_str(&format!("/context:{key}"));
                (
                    self.add(Op::Local(LocalOp { name: key }), &[], &info),
                    config,
                )
            }
        }))
    }

    fn plan_stage(&mut self, index: usize) -> Result<StageOut, PlanError> {
        match &self.stages[index] {
            Slot::Done(out) => return Ok((**out).clone()),
            Slot::InProgress => unreachable!("stages only use earlier stages"),
            Slot::NotPlanned => {}
        }
        self.stages[index] = Slot::InProgress;
        let df = self.df;
        let stage = &df.stages[index];
        let label = stage.name.clone().unwrap_or_else(|| index.to_string());
        let from_line = line_of(stage.from.span);
        let globals = self.globals.clone();
        let global_env = ExpandEnv {
            env: &[],
            args: &globals,
        };
        let base = self.expand(&stage.base, &global_env, from_line)?;
        let platform = match &stage.platform {
            None => self.platform.clone(),
            Some(p) => {
                let p = self.expand(p, &global_env, from_line)?;
                Platform::parse(&p).ok_or_else(|| PlanError::Invalid {
                    line: from_line,
                    message: format!("invalid platform {p:?}: expected os/arch[/variant]"),
                })?
            }
        };
        // ONBUILD triggers are known only once the base is; count them in.
        let from_info = |count: usize| StepInfo {
            stage: label.clone(),
            position: (1, count.max(1)),
            line: from_line,
            instruction: stage.from.original.clone(),
            lineage: format!("{label}/1/FROM"),
        };
        let provisional = from_info(1 + stage.instructions.len());
        let mut inherited = None;
        // A named context with the stage's name replaces the whole stage.
        if let Some(name) = &stage.name
            && let Some((step, config)) =
                self.named_step(name, &platform, from_line, &from_info(1))?
        {
            let out = StageOut {
                step,
                run_env: config.config.env.clone().unwrap_or_default(),
                config,
                history: Vec::new(),
                platform,
                args: Vec::new(),
            };
            self.stages[index] = Slot::Done(Box::new(out.clone()));
            return Ok(out);
        }
        let named_base = if self.stage_by_name(&base, index).is_none()
            && !base.eq_ignore_ascii_case("scratch")
        {
            self.named_step(&base, &platform, from_line, &provisional)?
        } else {
            None
        };
        let (step, mut config, history) = if let Some((step, config)) = named_base {
            (step, config, Vec::new())
        } else if base.eq_ignore_ascii_case("scratch") {
            let mut config = ImageConfig::default();
            config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
            (self.add(Op::Scratch, &[], &provisional), config, Vec::new())
        } else if let Some(j) = self.stage_by_name(&base, index) {
            let out = self.plan_stage(j)?;
            inherited = Some((out.run_env, out.args));
            (out.step, out.config, out.history)
        } else {
            let resolved = self.resolve(&base, &platform, from_line)?;
            let step = self.image_step(&resolved, &platform, &provisional);
            let mut config = resolved.config;
            // BuildKit makes sure PATH is always set: a base image without
            // one gets the default in the new image's config, after its
            // own variables (dockerfile2llb's dispatchStages).
            let env = config.config.env.get_or_insert_with(Vec::new);
            if env.lookup("PATH").is_none() {
                env.push(format!("PATH={DEFAULT_PATH}"));
            }
            (step, config, Vec::new())
        };
        let triggers = config.config.on_build.take().unwrap_or_default();
        let mut trigger_insts = Vec::new();
        for t in &triggers {
            let text = format!("FROM scratch\n{t}\n");
            let parsed = rbuild_parser::parse(text.as_bytes()).map_err(|e| PlanError::Invalid {
                line: from_line,
                message: format!(
                    "invalid ONBUILD trigger {t:?} in the base image: {}",
                    e.message
                ),
            })?;
            match parsed.stages.as_slice() {
                [s] if s.instructions.len() == 1 => {
                    trigger_insts.push((t.clone(), s.instructions[0].clone()));
                }
                _ => {
                    return Err(PlanError::Invalid {
                        line: from_line,
                        message: format!(
                            "invalid ONBUILD trigger {t:?} in the base image: expected one instruction"
                        ),
                    });
                }
            }
        }
        // Numbered as BuildKit numbers its vertices: a pulled base image,
        // then each RUN, COPY, ADD and WORKDIR (inherited ONBUILD triggers
        // all count).
        let pulled =
            !base.eq_ignore_ascii_case("scratch") && self.stage_by_name(&base, index).is_none();
        let count = usize::from(pulled)
            + trigger_insts.len()
            + stage
                .instructions
                .iter()
                .filter(|i| numbered(&i.kind))
                .count();
        // Fix the FROM step's info now that the count is known (only when
        // this stage added it).
        if let Some(Some(info)) = self.infos.get_mut(step.index())
            && info.stage == label
            && info.position.0 == 1
        {
            info.position.1 = count.max(1);
        }
        // BuildKit: a stage on another stage keeps that stage's state env
        // and build args, then applies its config env again.
        let (mut run_env, args) = inherited.unwrap_or_default();
        for e in config.config.env.as_deref().unwrap_or(&[]) {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            set_env(&mut run_env, k, v);
        }
        let mut st = StageState {
            index,
            label: label.clone(),
            step,
            config,
            history,
            platform,
            args,
            run_env,
            cmd_set: false,
            own_onbuild: Vec::new(),
            count,
            shown: usize::from(pulled),
        };
        let mut position = 1;
        for (text, inst) in &trigger_insts {
            position += 1;
            // BuildKit numbers every trigger and marks it ONBUILD.
            st.shown += 1;
            let mut at = self.at(&st, inst, position, from_line, text.clone());
            at.info.position.0 = st.shown;
            at.info.instruction = format!("ONBUILD {}", at.info.instruction);
            self.dispatch(&mut st, &at)?;
        }
        for inst in &stage.instructions {
            position += 1;
            if numbered(&inst.kind) {
                st.shown += 1;
            }
            let at = self.at(
                &st,
                inst,
                position,
                line_of(inst.span),
                inst.original.clone(),
            );
            self.dispatch(&mut st, &at)?;
        }
        st.config.config.on_build = if st.own_onbuild.is_empty() {
            None
        } else {
            Some(st.own_onbuild)
        };
        let out = StageOut {
            step: st.step,
            config: st.config,
            history: st.history,
            platform: st.platform,
            run_env: st.run_env,
            args: st.args,
        };
        self.stages[index] = Slot::Done(Box::new(out.clone()));
        Ok(out)
    }

    fn at<'i>(
        &self,
        st: &StageState,
        inst: &'i Instruction,
        position: usize,
        line: usize,
        text: String,
    ) -> At<'i> {
        At {
            inst,
            info: StepInfo {
                stage: st.label.clone(),
                position: (st.shown, st.count),
                line,
                instruction: self.step_name(st, inst, text),
                lineage: format!("{}/{position}/{}", st.label, inst.keyword),
            },
        }
    }

    /// How progress shows an instruction, as BuildKit names its vertices:
    /// the keyword upper-cased and, for RUN, COPY, ADD and WORKDIR, the
    /// stage's variables expanded (RUN keeps quotes and leaves unset
    /// variables as written); the text as written if expansion fails.
    fn step_name(&self, st: &StageState, inst: &Instruction, text: String) -> String {
        let lex = match inst.kind {
            InstructionKind::Run { .. } => Lex {
                raw_quotes: true,
                skip_unset_env: true,
                ..self.lex
            },
            InstructionKind::Copy { .. }
            | InstructionKind::Add { .. }
            | InstructionKind::Workdir { .. } => self.lex,
            _ => return uppercase_keyword(&text),
        };
        match lex.process_word(&text, &st.expand_env()) {
            Ok(e) => uppercase_keyword(&e.value),
            Err(_) => uppercase_keyword(&text),
        }
    }

    fn dispatch(&mut self, st: &mut StageState, at: &At<'_>) -> Result<(), PlanError> {
        let line = at.line();
        match &at.inst.kind {
            InstructionKind::From { .. } => {
                return Err(at.invalid("FROM is not allowed here"));
            }
            InstructionKind::Run {
                command,
                mounts,
                network,
                security,
                devices,
                heredocs,
            } => {
                if *security == Some(SecurityMode::Insecure) {
                    return Err(at.invalid(
                        "RUN --security=insecure is not supported: rbuild runs every step sandboxed",
                    ));
                }
                if !devices.is_empty() {
                    return Err(at.invalid("RUN --device is not supported"));
                }
                self.dispatch_run(st, at, command, mounts, *network, heredocs)?;
            }
            InstructionKind::Copy {
                sources,
                dest,
                from,
                chown,
                chmod,
                link,
                parents,
                exclude,
                heredocs,
            } => {
                let spec = CopySpec {
                    keyword: "COPY",
                    sources,
                    dest,
                    from: from.as_deref(),
                    chown: chown.as_deref(),
                    chmod: chmod.as_deref(),
                    link: *link,
                    parents: *parents,
                    exclude,
                    heredocs,
                    add: None,
                    git_checksum: None,
                };
                self.dispatch_copy(st, at, spec)?;
            }
            InstructionKind::Add {
                sources,
                dest,
                chown,
                chmod,
                link,
                exclude,
                checksum,
                keep_git_dir,
                unpack,
                heredocs,
            } => {
                // A git source's checksum is the commit it must be at;
                // an HTTP source's a sha256 digest.
                let (checksum, git_checksum) = match checksum {
                    None => (None, None),
                    Some(c) => {
                        // BuildKit's checks (dockerfile2llb convert_copy.go):
                        // one source, fetched from a URL.
                        if sources.len() + heredocs.len() != 1 {
                            return Err(
                                at.invalid("checksum can't be specified for multiple sources")
                            );
                        }
                        let source = sources
                            .first()
                            .map(|s| self.expand(s, &st.expand_env(), line))
                            .transpose()?
                            .unwrap_or_default();
                        let remote = ["http://", "https://", "git://", "ssh://", "git@"]
                            .iter()
                            .any(|p| source.starts_with(p));
                        if !remote {
                            return Err(at.invalid("checksum requires HTTP(S) or Git sources"));
                        }
                        let c = self.expand(c, &st.expand_env(), line)?;
                        if is_commit_id(&c) {
                            (None, Some(c.to_ascii_lowercase()))
                        } else {
                            let d = c
                                .parse()
                                .map_err(|e| at.invalid(format!("ADD --checksum: {e}")))?;
                            (Some(d), None)
                        }
                    }
                };
                let spec = CopySpec {
                    keyword: "ADD",
                    sources,
                    dest,
                    from: None,
                    chown: chown.as_deref(),
                    chmod: chmod.as_deref(),
                    link: *link,
                    parents: false,
                    exclude,
                    heredocs,
                    add: Some(AddOptions {
                        unpack: unpack.unwrap_or(true),
                        checksum,
                        keep_git_dir: keep_git_dir.unwrap_or(false),
                    }),
                    git_checksum,
                };
                self.dispatch_copy(st, at, spec)?;
            }
            InstructionKind::Workdir { path } => {
                let p = self.expand(path, &st.expand_env(), line)?;
                let wd = paths::resolve(&st.workdir(), &p);
                st.config.config.working_dir = Some(wd.clone());
                // BuildKit creates no directory for `/`, and records no layer
                // (nor numbers a step for it).
                let layer = if wd == "/" {
                    st.shown -= 1;
                    None
                } else {
                    let op = Op::Mkdir(MkdirOp {
                        path: wd.clone(),
                        user: st.user(),
                        display: at.info.instruction.clone(),
                    });
                    st.step = self.add(op, &[st.step], &at.info);
                    Some(st.step)
                };
                st.record(format!("WORKDIR {wd}"), layer);
            }
            InstructionKind::Env { pairs } => {
                let expanded = self.expand_pairs(st, pairs, line)?;
                let env = st.config.config.env.get_or_insert_with(Vec::new);
                for (k, v) in &expanded {
                    set_env(env, k, v);
                    set_env(&mut st.run_env, k, v);
                }
                st.record(format!("ENV {}", join_pairs(&expanded)), None);
            }
            InstructionKind::Label { pairs } => {
                let expanded = self.expand_pairs(st, pairs, line)?;
                let labels = st.config.config.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in &expanded {
                    labels.insert(k.clone(), v.clone());
                }
                st.record(format!("LABEL {}", join_pairs(&expanded)), None);
            }
            InstructionKind::Arg { args } => {
                let mut shown = Vec::new();
                for def in args {
                    self.declared.insert(def.name.clone());
                    let value = if let Some(v) = self.request.build_args.get(&def.name) {
                        Some(v.clone())
                    } else if let Some(d) = &def.default {
                        // Current BuildKit expands a default with the global
                        // args too (its `mergeEnv(d.state, globalArgs)`),
                        // stage args and ENV winning.
                        let mut scope = self.globals.clone();
                        scope.extend(st.args.iter().cloned());
                        let env = ExpandEnv {
                            env: &st.run_env,
                            args: &scope,
                        };
                        Some(self.expand(d, &env, line)?)
                    } else {
                        // A bare ARG re-declares a global (or automatic) arg.
                        self.globals
                            .iter()
                            .rev()
                            .find(|a| a.name == def.name)
                            .and_then(|a| a.value.clone())
                    };
                    shown.push(match &value {
                        Some(v) => format!("{}={v}", def.name),
                        None => def.name.clone(),
                    });
                    if let Some(v) = &value {
                        set_env(&mut st.run_env, &def.name, v);
                    }
                    st.args.push(Arg {
                        name: def.name.clone(),
                        value,
                    });
                }
                st.record(format!("ARG {}", shown.join(" ")), None);
            }
            InstructionKind::Expose { ports } => {
                let mut new_ports = BTreeSet::new();
                for p in ports {
                    let words = self
                        .lex
                        .process_words(p, &st.expand_env())
                        .map_err(|source| PlanError::Expand {
                            line,
                            word: p.clone(),
                            source,
                        })?;
                    for w in words.words {
                        new_ports.extend(port_specs(&w).map_err(|m| at.invalid(m))?);
                    }
                }
                let exposed = st
                    .config
                    .config
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                for p in &new_ports {
                    exposed.insert(p.clone(), EmptyObject {});
                }
                // Go prints a map with its keys sorted.
                let shown: Vec<String> = new_ports.iter().map(|p| format!("{p}:{{}}")).collect();
                st.record(format!("EXPOSE map[{}]", shown.join(" ")), None);
            }
            InstructionKind::Volume { paths: vols } => {
                let mut expanded = Vec::new();
                for v in vols {
                    let v = self.expand(v, &st.expand_env(), line)?;
                    if v.is_empty() {
                        return Err(at.invalid("VOLUME specified can not be an empty string"));
                    }
                    expanded.push(v);
                }
                let volumes = st.config.config.volumes.get_or_insert_with(BTreeMap::new);
                for v in &expanded {
                    volumes.insert(v.clone(), EmptyObject {});
                }
                st.record(format!("VOLUME {}", go_format::list(&expanded)), None);
            }
            InstructionKind::User { user } => {
                let u = self.expand(user, &st.expand_env(), line)?;
                st.config.config.user = Some(u.clone());
                st.record(format!("USER {u}"), None);
            }
            InstructionKind::Stopsignal { signal } => {
                let s = self.expand(signal, &st.expand_env(), line)?;
                st.config.config.stop_signal = Some(s.clone());
                st.record(format!("STOPSIGNAL {s}"), None);
            }
            InstructionKind::Cmd { command } => {
                let args = command_args(st, command);
                st.config.config.cmd = Some(args.clone());
                st.config.config.args_escaped = Some(true);
                st.cmd_set = true;
                st.record(format!("CMD {}", go_format::quote_list(&args)), None);
            }
            InstructionKind::Entrypoint { command } => {
                let args = command_args(st, command);
                st.config.config.entrypoint = Some(args.clone());
                // Docker: an ENTRYPOINT drops the CMD it inherited, not
                // one this stage set before it.
                if !st.cmd_set {
                    st.config.config.cmd = None;
                }
                st.record(format!("ENTRYPOINT {}", go_format::quote_list(&args)), None);
            }
            InstructionKind::Shell { shell } => {
                st.config.config.shell = Some(shell.clone());
                st.record(format!("SHELL {}", go_format::list(shell)), None);
            }
            InstructionKind::Healthcheck { check } => {
                let hc = match check {
                    Healthcheck::None => HealthConfig {
                        test: vec!["NONE".to_string()],
                        ..HealthConfig::default()
                    },
                    Healthcheck::Cmd {
                        cmd,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let ns = |d: &Option<std::time::Duration>| {
                            d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                        };
                        HealthConfig {
                            test: match cmd {
                                ShellOrExec::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                                ShellOrExec::Exec(v) => {
                                    let mut t = vec!["CMD".to_string()];
                                    t.extend(v.iter().cloned());
                                    t
                                }
                            },
                            interval: ns(interval),
                            timeout: ns(timeout),
                            start_period: ns(start_period),
                            start_interval: ns(start_interval),
                            retries: retries.unwrap_or(0),
                        }
                    }
                };
                // `%+v` of BuildKit's HealthcheckConfig (since moby/buildkit
                // d67dafeb, 2026; docker 20.10 printed `%q` of a pointer):
                // field names, the test as a Go slice, durations as Go
                // prints them.
                let shown = format!(
                    "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                    go_format::list(&hc.test),
                    go_format::duration(hc.interval),
                    go_format::duration(hc.timeout),
                    go_format::duration(hc.start_period),
                    go_format::duration(hc.start_interval),
                    hc.retries,
                );
                st.config.config.healthcheck = Some(hc);
                st.record(shown, None);
            }
            InstructionKind::Onbuild { expression, .. } => {
                // No history entry: BuildKit's dispatchOnbuild only adds
                // the trigger to the config.
                st.own_onbuild.push(expression.clone());
            }
            InstructionKind::Maintainer { name } => {
                st.config.author = Some(name.clone());
                st.record(format!("MAINTAINER {name}"), None);
            }
        }
        Ok(())
    }

    /// ENV/LABEL pairs, all expanded with the environment before the
    /// instruction (`ENV a=1 b=$a` gives `b` the old `a`, as docker).
    fn expand_pairs(
        &self,
        st: &StageState,
        pairs: &[KeyValue],
        line: usize,
    ) -> Result<Vec<(String, String)>, PlanError> {
        let env = st.expand_env();
        pairs
            .iter()
            .map(|p| {
                Ok((
                    self.expand(&p.key, &env, line)?,
                    self.expand(&p.value, &env, line)?,
                ))
            })
            .collect()
    }

    fn dispatch_run(
        &mut self,
        st: &mut StageState,
        at: &At<'_>,
        command: &ShellOrExec,
        mounts: &[Mount],
        network: Option<NetworkMode>,
        heredocs: &[rbuild_parser::Heredoc],
    ) -> Result<(), PlanError> {
        let mut exec_mounts = Vec::new();
        let mut args = match command {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let body = match heredocs.first() {
                    None => s.clone(),
                    Some(h) if heredocs.len() == 1 && is_single_heredoc(s, &h.name) => {
                        if h.content.starts_with("#!") {
                            // A script with its own interpreter: BuildKit
                            // mounts it as an executable file and runs it.
                            let target = format!("{HEREDOC_SCRIPT_DIR}/{}", h.name);
                            exec_mounts.push(ExecMount {
                                target: target.clone(),
                                kind: ExecMountKind::File {
                                    content: h.content.clone(),
                                    mode: 0o755,
                                },
                            });
                            target
                        } else {
                            h.content.clone()
                        }
                    }
                    Some(_) => {
                        // The shell handles the heredocs itself: BuildKit
                        // hands it the command with the bodies rejoined.
                        let mut full = s.clone();
                        for h in heredocs {
                            full.push('\n');
                            full.push_str(&h.content);
                            full.push_str(&h.name);
                        }
                        full
                    }
                };
                let mut a = st.shell();
                a.push(body);
                a
            }
        };
        if args.is_empty() {
            return Err(at.invalid("RUN has no command"));
        }
        let mut inputs = vec![st.step];
        for m in mounts {
            let ssh_before = exec_mounts
                .iter()
                .filter(|m: &&ExecMount| matches!(m.kind, ExecMountKind::Ssh { .. }))
                .count();
            let mount = self.mount(st, at, m, &mut inputs, ssh_before)?;
            exec_mounts.push(mount);
        }
        // The process environment: the stage's state env (ENV and valued
        // ARGs in order, see `StageState::run_env`).
        let mut env: Vec<String> = st.run_env.clone();
        if env.lookup("PATH").is_none() {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        // History: every build arg in scope with the value the env gives
        // it, else its own (BuildKit's runCommandString).
        let scope = dedup_args(&st.args);
        let mut shown_args = Vec::new();
        for a in &scope {
            let shown = st
                .run_env
                .lookup(&a.name)
                .map(str::to_string)
                .or_else(|| a.value.clone())
                .unwrap_or_default();
            shown_args.push(format!("{}={shown}", a.name));
        }
        let proxy_env = proxy_env(&self.request.build_args, |name| {
            scope.iter().any(|a| a.name == name)
        });
        let network = match network {
            None | Some(NetworkMode::Default) => self.request.network,
            Some(NetworkMode::Host) => ExecNetwork::Host,
            Some(NetworkMode::None) => ExecNetwork::None,
        };
        let mut created_by = String::from("RUN ");
        if !shown_args.is_empty() {
            created_by.push_str(&format!("|{} {} ", shown_args.len(), shown_args.join(" ")));
        }
        created_by.push_str(&args.join(" "));
        created_by.push_str(" # buildkit");
        let op = Op::Exec(ExecOp {
            args: std::mem::take(&mut args),
            env,
            cwd: st.workdir(),
            user: st.user(),
            network,
            mounts: exec_mounts,
            proxy_env,
            display: at.info.instruction.clone(),
        });
        st.step = self.add(op, &inputs, &at.info);
        st.record(created_by, Some(st.step));
        Ok(())
    }

    /// One `RUN --mount` as an [`ExecMount`]; a `from=` adds an input.
    fn mount(
        &mut self,
        st: &StageState,
        at: &At<'_>,
        m: &Mount,
        inputs: &mut Vec<StepId>,
        ssh_before: usize,
    ) -> Result<ExecMount, PlanError> {
        let line = at.line();
        // Re-check the mount after expansion: options holding `$` were
        // only deferred by the parser.
        let m = if m.spec.contains('$') {
            let env = st.expand_env();
            let mut fields = Vec::new();
            let split = rbuild_parser::split_csv(&m.spec)
                .map_err(|e| at.invalid(format!("invalid mount {:?}: {e}", m.spec)))?;
            for field in split {
                let field = match field.split_once('=') {
                    Some((k, v)) if !k.eq_ignore_ascii_case("from") => {
                        format!("{k}={}", self.expand(v, &env, line)?)
                    }
                    _ => field,
                };
                fields.push(rbuild_parser::quote_csv_field(&field));
            }
            Mount::parse(&fields.join(","), m.span)
                .map_err(|e| at.invalid(format!("invalid mount after expansion: {}", e.message)))?
        } else {
            m.clone()
        };
        let workdir = st.workdir();
        let target = m.target.as_deref().map(|t| paths::resolve(&workdir, t));
        let need_target = || at.invalid(format!("mount {:?} has no target", m.spec));
        let mut from_input = |this: &mut Self, from: &str| -> Result<usize, PlanError> {
            let step = this.source_step(from, st, at)?;
            inputs.push(step);
            Ok(inputs.len() - 1)
        };
        let source_in_input = |s: &Option<String>| paths::resolve("/", s.as_deref().unwrap_or("/"));
        let (target, kind) = match m.kind {
            MountType::Bind => {
                let target = target.ok_or_else(need_target)?;
                let kind = match &m.from {
                    None => {
                        let src = paths::clean(m.source.as_deref().unwrap_or("."));
                        let src = src.trim_start_matches('/');
                        ExecMountKind::Context {
                            source: if src.is_empty() { "." } else { src }.to_string(),
                            readonly: m.readonly,
                        }
                    }
                    Some(from) => match self.named_local(from) {
                        Some(name) => {
                            let src = paths::clean(m.source.as_deref().unwrap_or("."));
                            let src = src.trim_start_matches('/');
                            ExecMountKind::Named {
                                name,
                                source: if src.is_empty() { "." } else { src }.to_string(),
                                readonly: m.readonly,
                            }
                        }
                        None => ExecMountKind::Input {
                            input: from_input(self, from)?,
                            source: source_in_input(&m.source),
                            readonly: m.readonly,
                        },
                    },
                };
                (target, kind)
            }
            MountType::Cache => {
                let target = target.ok_or_else(need_target)?;
                let seed = match &m.from {
                    None => None,
                    Some(from) => Some((from_input(self, from)?, source_in_input(&m.source))),
                };
                let kind = ExecMountKind::Cache {
                    id: m.id.clone().unwrap_or_else(|| target.clone()),
                    sharing: match m.sharing {
                        None | Some(Sharing::Shared) => CacheSharing::Shared,
                        Some(Sharing::Private) => CacheSharing::Private,
                        Some(Sharing::Locked) => CacheSharing::Locked,
                    },
                    mode: m.mode.unwrap_or(0o755),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                    readonly: m.readonly,
                    seed,
                };
                (target, kind)
            }
            MountType::Tmpfs => (
                target.ok_or_else(need_target)?,
                ExecMountKind::Tmpfs { size: m.size },
            ),
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .or_else(|| m.source.clone())
                        .or_else(|| target.as_deref().map(paths::base_name))
                        .ok_or_else(|| at.invalid("secret mount needs an id"))?;
                // Only a file when asked for one or when not an env var.
                let target = match (target, &m.env) {
                    (Some(t), _) => t,
                    (None, Some(_)) => String::new(),
                    (None, None) => format!("/run/secrets/{id}"),
                };
                let kind = ExecMountKind::Secret {
                    id,
                    env: m.env.clone(),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o400),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                };
                (target, kind)
            }
            MountType::Ssh => {
                if m.from.is_some() {
                    return Err(at.invalid("ssh mount should not have a from"));
                }
                // BuildKit numbers the default sockets by the step's
                // ssh mounts: /run/buildkit/ssh_agent.0, .1, …
                let target =
                    target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{}", ssh_before));
                let kind = ExecMountKind::Ssh {
                    id: m.id.clone().unwrap_or_else(|| DEFAULT_SSH_ID.to_string()),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o600),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                };
                (target, kind)
            }
        };
        Ok(ExecMount { target, kind })
    }

    fn dispatch_copy(
        &mut self,
        st: &mut StageState,
        at: &At<'_>,
        spec: CopySpec<'_>,
    ) -> Result<(), PlanError> {
        let line = at.line();
        let env = st.expand_env();
        let sources = spec
            .sources
            .iter()
            .map(|s| self.expand(s, &env, line))
            .collect::<Result<Vec<_>, _>>()?;
        let written_dest = self.expand(spec.dest, &env, line)?;
        let chown = spec.chown.map(|c| self.expand(c, &env, line)).transpose()?;
        let chmod = spec.chmod.map(|c| self.expand(c, &env, line)).transpose()?;
        let mut inline = Vec::new();
        for h in spec.heredocs {
            let content = if h.expand {
                Lex::for_heredoc()
                    .process_word(&h.content, &env)
                    .map_err(|source| PlanError::Expand {
                        line,
                        word: h.content.clone(),
                        source,
                    })?
                    .value
            } else {
                h.content.clone()
            };
            inline.push((h.name.clone(), content));
        }
        // The destination against WORKDIR; a trailing `/` (or `.`) says
        // "into this directory" and is kept.
        let mut dest = paths::resolve(&st.workdir(), &written_dest);
        if (written_dest.is_empty() || written_dest == "." || written_dest.ends_with('/'))
            && !dest.ends_with('/')
        {
            dest.push('/');
        }
        // As BuildKit writes it since v0.13 (moby/buildkit c7ce41a2, 2024):
        // the keyword, `--parents`, `--chown=`, `--chmod=` (expanded), the
        // sources, the heredocs, the destination as written.
        let mut created_by = spec.keyword.to_string();
        if spec.parents {
            created_by.push_str(" --parents");
        }
        if let Some(c) = &chown {
            created_by.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            created_by.push_str(&format!(" --chmod={c}"));
        }
        for s in &sources {
            created_by.push(' ');
            created_by.push_str(s);
        }
        for h in spec.heredocs {
            created_by.push_str(&format!(" <<{}", h.name));
        }
        created_by.push(' ');
        created_by.push_str(&written_dest);
        created_by.push_str(" # buildkit");

        let named_source = spec.from.and_then(|f| self.named_local(f));
        let from = match spec.from {
            None => None,
            Some(_) if named_source.is_some() => None,
            Some(f) => Some(self.source_step(f, st, at)?),
        };
        // ADD of a git repository: each one a git step, copied from.
        let mut git_sources = Vec::new();
        let sources: Vec<String> = match &spec.add {
            Some(add) => {
                let mut rest = Vec::new();
                for s in sources {
                    match parse_git_url(&s) {
                        Some(g) => git_sources.push(GitOp {
                            remote: g.remote,
                            reference: g.reference,
                            subdir: g.subdir,
                            keep_git_dir: add.keep_git_dir,
                            checksum: spec.git_checksum.clone(),
                        }),
                        None => rest.push(s),
                    }
                }
                if spec.git_checksum.is_some() && !rest.is_empty() {
                    return Err(at.invalid(format!(
                        "ADD --checksum={} is a commit, for git sources only; {:?} is not one",
                        spec.git_checksum.as_deref().unwrap_or_default(),
                        rest[0]
                    )));
                }
                if !git_sources.is_empty() && add.checksum.is_some() {
                    return Err(at.invalid(
                        "ADD --checksum of a git source is the commit it must be at (40 or 64 hex digits), not a sha256 digest",
                    ));
                }
                rest
            }
            None => sources,
        };
        let base = CopyOp {
            source: CopySource::Context,
            sources: Vec::new(),
            dest,
            chown,
            chmod,
            link: spec.link,
            parents: spec.parents,
            exclude: spec.exclude.to_vec(),
            add: spec.add,
            display: at.info.instruction.clone(),
        };
        let mut ops = Vec::new();
        if !inline.is_empty() {
            ops.push((
                CopyOp {
                    source: CopySource::Inline(inline),
                    ..base.clone()
                },
                None,
            ));
        }
        for (n, git) in git_sources.into_iter().enumerate() {
            // The git step has a lineage of its own, apart from the copy.
            let mut info = at.info.clone();
            info.lineage.push_str(&format!("/git{n}"));
            let git_step = self.add(Op::Git(git), &[], &info);
            ops.push((
                CopyOp {
                    source: CopySource::Input,
                    sources: vec!["/".to_string()],
                    add: None,
                    ..base.clone()
                },
                Some(git_step),
            ));
        }
        if !sources.is_empty() || ops.is_empty() {
            ops.push((
                CopyOp {
                    source: if let Some(name) = &named_source {
                        CopySource::Named(name.clone())
                    } else if from.is_some() {
                        CopySource::Input
                    } else {
                        CopySource::Context
                    },
                    sources,
                    ..base
                },
                from,
            ));
        }
        for (op, input) in ops {
            let link = op.link;
            let mut inputs = Vec::new();
            if link {
                // `--link`: copy onto an empty filesystem so the layer does
                // not depend on what is below, then stack it.
                inputs.push(self.add(Op::Scratch, &[], &at.info));
            } else {
                inputs.push(st.step);
            }
            inputs.extend(input);
            let copied = self.add(Op::Copy(op), &inputs, &at.info);
            st.step = if link {
                self.add(Op::Merge, &[st.step, copied], &at.info)
            } else {
                copied
            };
        }
        st.record(created_by, Some(st.step));
        Ok(())
    }
}

/// COPY's and ADD's arguments, to plan both with one function.
struct CopySpec<'i> {
    keyword: &'static str,
    sources: &'i [String],
    dest: &'i str,
    from: Option<&'i str>,
    chown: Option<&'i str>,
    chmod: Option<&'i str>,
    link: bool,
    parents: bool,
    exclude: &'i [String],
    heredocs: &'i [rbuild_parser::Heredoc],
    add: Option<AddOptions>,
    /// ADD `--checksum=COMMIT` (a git source's pin).
    git_checksum: Option<String>,
}

/// A git commit id as `ADD --checksum` takes it: 40 (sha1) or 64
/// (sha256) hex digits.
fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// CMD/ENTRYPOINT argv: shell form runs through the stage's SHELL.
fn command_args(st: &StageState, command: &ShellOrExec) -> Vec<String> {
    match command {
        ShellOrExec::Exec(v) => v.clone(),
        ShellOrExec::Shell(s) => {
            let mut a = st.shell();
            a.push(s.clone());
            a
        }
    }
}

fn join_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_specs_like_nat() {
        assert_eq!(port_specs("80").unwrap(), ["80/tcp"]);
        assert_eq!(port_specs("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            port_specs("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(port_specs("127.0.0.1:8080:80").unwrap(), ["80/tcp"]);
        assert!(port_specs("http").is_err());
    }

    #[test]
    fn single_heredoc_detection() {
        assert!(is_single_heredoc("<<EOF", "EOF"));
        assert!(is_single_heredoc("<<-'EOF'", "EOF"));
        assert!(!is_single_heredoc("cat <<EOF", "EOF"));
        assert!(!is_single_heredoc("<<EOF > x", "EOF"));
    }
}
