//! HCL and JSON bake files → [`Target`]s and [`Group`]s.
//!
//! Two stages, as for Dockerfiles: the text is parsed into raw blocks
//! with source positions (hcl-edit keeps the spans; JSON bake files are
//! HCL's JSON form, whose strings are templates), then evaluated: the
//! variables first (each one's default, or the environment variable of
//! its name, converted to the default's type; defaults may refer to
//! other variables in any order), then every target and group block with
//! the variables and [`functions`](crate::functions) in scope, a target
//! with a `matrix` once per combination of its values.

use std::collections::BTreeMap;

use hcl::Value;
use hcl::edit::Span as _;
use hcl::eval::{Context, ErrorKind, Evaluate as _};

use crate::error::BakeError;
use crate::model::{Group, Pos, Target, UNSUPPORTED_KEYS, Variable, parse_bool};
use crate::user_functions::{self, UserFunc};
use crate::{BakeFile, functions};

/// An attribute as written: `key = expr`, where.
#[derive(Debug, Clone)]
pub(crate) struct RawAttr {
    pub key: String,
    pub expr: hcl::Expression,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Target,
    Group,
    Variable,
    Function,
}

/// A block as written: `target "name" { … }`.
#[derive(Debug, Clone)]
pub(crate) struct RawBlock {
    pub kind: Kind,
    pub label: String,
    pub attrs: Vec<RawAttr>,
    /// A variable's `validation { condition = …, error_message = … }`
    /// blocks, each as its attributes.
    pub validations: Vec<Vec<RawAttr>>,
    pub pos: Pos,
}

/// One file's blocks and top-level attributes.
#[derive(Debug, Default)]
pub(crate) struct RawFile {
    pub blocks: Vec<RawBlock>,
    pub attrs: Vec<RawAttr>,
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn position(file: &str, text: &str, offset: usize) -> Pos {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        file: file.to_string(),
        line,
        column: before[start..].chars().count() + 1,
    }
}

/// The source line of `pos` with a caret under its column.
pub(crate) fn snippet(text: &str, pos: &Pos) -> String {
    if pos.line == 0 {
        return String::new();
    }
    let Some(line) = text.lines().nth(pos.line - 1) else {
        return String::new();
    };
    let gutter = pos.line.to_string();
    let pad = " ".repeat(gutter.len());
    let caret = " ".repeat(pos.column.saturating_sub(1));
    format!("\n{pad} |\n{gutter} | {line}\n{pad} | {caret}^")
}

fn kind_of(ident: &str) -> Option<Kind> {
    match ident {
        "target" => Some(Kind::Target),
        "group" => Some(Kind::Group),
        "variable" => Some(Kind::Variable),
        "function" => Some(Kind::Function),
        _ => None,
    }
}

/// Parses an HCL bake file, keeping each block's and attribute's position.
pub(crate) fn parse_hcl(file: &BakeFile) -> Result<RawFile, BakeError> {
    let text = file.text()?;
    let body = hcl::edit::parser::parse_body(text).map_err(|e| {
        let pos = Pos {
            file: file.name.clone(),
            line: e.location().line(),
            column: e.location().column(),
        };
        BakeError::invalid(text, pos, format!("syntax error: {}", e.message()))
    })?;
    let at = |span: Option<std::ops::Range<usize>>| {
        position(&file.name, text, span.map_or(0, |s| s.start))
    };
    let attr = |a: &hcl::edit::structure::Attribute| RawAttr {
        key: a.key.as_str().to_string(),
        expr: hcl::Expression::from(a.value.clone()),
        pos: at(a.value.span().or(a.span())),
    };
    let mut raw = RawFile::default();
    for structure in body.iter() {
        if let Some(a) = structure.as_attribute() {
            raw.attrs.push(attr(a));
            continue;
        }
        let Some(block) = structure.as_block() else {
            continue;
        };
        let pos = at(block.span());
        let ident = block.ident.as_str();
        let Some(kind) = kind_of(ident) else {
            return Err(BakeError::invalid(
                text,
                pos,
                format!(
                    "unsupported block type {ident:?}: expected target, group, variable or function"
                ),
            ));
        };
        let [label] = block.labels.as_slice() else {
            return Err(BakeError::invalid(
                text,
                pos,
                format!("a {ident} block needs exactly one name: {ident} \"NAME\" {{ … }}"),
            ));
        };
        let mut attrs = Vec::new();
        let mut validations = Vec::new();
        for inner in block.body.iter() {
            if let Some(a) = inner.as_attribute() {
                attrs.push(attr(a));
            } else if let Some(b) = inner.as_block() {
                if kind == Kind::Variable && b.ident.as_str() == "validation" {
                    validations.push(
                        b.body
                            .iter()
                            .filter_map(|s| s.as_attribute())
                            .map(attr)
                            .collect(),
                    );
                    continue;
                }
                return Err(BakeError::invalid(
                    text,
                    at(b.span()),
                    format!("unexpected block {:?} in {ident}", b.ident.as_str()),
                ));
            }
        }
        raw.blocks.push(RawBlock {
            kind,
            label: label.as_str().to_string(),
            attrs,
            validations,
            pos,
        });
    }
    Ok(raw)
}

/// A JSON value as the HCL expression it stands for: strings are
/// templates (`"${VAR}"` interpolates, as in HCL's JSON syntax).
fn json_expr(v: &serde_json::Value) -> hcl::Expression {
    use hcl::Expression as E;
    match v {
        serde_json::Value::Null => E::Null,
        serde_json::Value::Bool(b) => E::Bool(*b),
        serde_json::Value::Number(n) => {
            n.as_f64()
                .and_then(hcl::Number::from_f64)
                .map_or(E::Null, |n| {
                    if let Some(i) = v.as_i64() {
                        E::Number(i.into())
                    } else {
                        E::Number(n)
                    }
                })
        }
        serde_json::Value::String(s) if s.contains("${") || s.contains("%{") => {
            E::TemplateExpr(Box::new(hcl::TemplateExpr::QuotedString(s.clone())))
        }
        serde_json::Value::String(s) => E::String(s.clone()),
        serde_json::Value::Array(a) => E::Array(a.iter().map(json_expr).collect()),
        serde_json::Value::Object(o) => E::Object(
            o.iter()
                .map(|(k, v)| (hcl::ObjectKey::from(k.as_str()), json_expr(v)))
                .collect(),
        ),
    }
}

/// Parses a JSON bake file (`{"variable": …, "group": …, "target": …}`).
pub(crate) fn parse_json(file: &BakeFile) -> Result<RawFile, BakeError> {
    let text = file.text()?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let pos = Pos {
            file: file.name.clone(),
            line: e.line(),
            column: e.column(),
        };
        BakeError::invalid(text, pos, format!("invalid JSON: {e}"))
    })?;
    let file_pos = Pos {
        file: file.name.clone(),
        line: 0,
        column: 0,
    };
    let Some(top) = value.as_object() else {
        return Err(BakeError::invalid(
            text,
            file_pos,
            "a JSON bake file is an object".into(),
        ));
    };
    let mut raw = RawFile::default();
    // serde_json keeps no positions: an object key is found in the text
    // by searching for it, in order, after its parents' keys.
    let find = |path: &[&str]| -> Pos {
        let mut at = 0;
        for k in path {
            let quoted = serde_json::to_string(k).unwrap_or_default();
            match text[at..].find(&quoted) {
                Some(i) => at += i,
                None => return file_pos.clone(),
            }
        }
        position(&file.name, text, at)
    };
    for (key, v) in top {
        let Some(kind) = kind_of(key) else {
            raw.attrs.push(RawAttr {
                key: key.clone(),
                expr: json_expr(v),
                pos: find(&[key]),
            });
            continue;
        };
        let Some(blocks) = v.as_object() else {
            return Err(BakeError::invalid(
                text,
                file_pos,
                format!("{key:?} must be an object of named {key}s"),
            ));
        };
        for (label, body) in blocks {
            let pos = find(&[key, label]);
            let attrs = match body {
                serde_json::Value::Object(o) => o
                    .iter()
                    .map(|(k, v)| RawAttr {
                        key: k.clone(),
                        expr: json_expr(v),
                        pos: find(&[key, label, k]),
                    })
                    .collect(),
                _ => {
                    return Err(BakeError::invalid(
                        text,
                        pos,
                        format!("{key} {label:?} must be an object"),
                    ));
                }
            };
            raw.blocks.push(RawBlock {
                kind,
                label: label.clone(),
                attrs,
                validations: Vec::new(),
                pos,
            });
        }
    }
    Ok(raw)
}

/// What evaluation reads from outside the files.
pub(crate) struct Env<'a> {
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    pub local_platform: &'a str,
}

/// A file's text, for error snippets, by file name.
pub(crate) type Texts = BTreeMap<String, String>;

fn eval_error(texts: &Texts, pos: &Pos, what: &str, e: &hcl::eval::Error) -> BakeError {
    let text = texts.get(&pos.file).map_or("", String::as_str);
    BakeError::invalid(text, pos.clone(), format!("{what}: {}", e.kind()))
}

/// Evaluates every variable and top-level attribute: the environment
/// overrides a variable's default (converted to the default's type);
/// defaults may use each other in any order.
fn eval_variables(
    files: &[RawFile],
    env: &Env<'_>,
    texts: &Texts,
) -> Result<BTreeMap<String, Value>, BakeError> {
    struct Pending<'a> {
        name: &'a str,
        default: Option<&'a RawAttr>,
        overridable: bool,
        pos: &'a Pos,
    }
    let mut pending: Vec<Pending<'_>> = Vec::new();
    for file in files {
        for a in &file.attrs {
            pending.retain(|p| p.name != a.key);
            pending.push(Pending {
                name: &a.key,
                default: Some(a),
                overridable: false,
                pos: &a.pos,
            });
        }
        for b in file.blocks.iter().filter(|b| b.kind == Kind::Variable) {
            pending.retain(|p| p.name != b.label);
            pending.push(Pending {
                name: &b.label,
                default: b.attrs.iter().find(|a| a.key == "default"),
                overridable: true,
                pos: &b.pos,
            });
        }
    }
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    values.insert(
        "BAKE_LOCAL_PLATFORM".to_string(),
        Value::from(env.local_platform),
    );
    loop {
        let mut progress = false;
        let mut first_error = None;
        let names: Vec<String> = pending.iter().map(|p| p.name.to_string()).collect();
        let mut still = Vec::new();
        for p in pending {
            let mut ctx = Context::new();
            functions::declare_all(&mut ctx);
            user_functions::declare(&mut ctx);
            user_functions::set_vars(&values);
            for (k, v) in &values {
                ctx.declare_var(k.as_str(), v.clone());
            }
            let default = match p.default {
                None => Ok(Value::from("")),
                Some(a) => a.expr.evaluate(&ctx),
            };
            let from_env = p.overridable.then(|| (env.lookup)(p.name)).flatten();
            let value = match (default, from_env) {
                (Ok(d), Some(e)) => typed_from_env(&d, &e).map_err(|m| {
                    let text = texts.get(&p.pos.file).map_or("", String::as_str);
                    BakeError::invalid(
                        text,
                        p.pos.clone(),
                        format!("variable {:?}: environment value {e:?}: {m}", p.name),
                    )
                })?,
                (Ok(d), None) => d,
                // The default refers to a variable not evaluated yet.
                (Err(e), _) if matches!(e.kind(), ErrorKind::UndefinedVar(v) if names.iter().any(|n| n == v.as_str()) && v.as_str() != p.name) =>
                {
                    if first_error.is_none() {
                        first_error = Some((p.pos.clone(), e));
                    }
                    still.push(p);
                    continue;
                }
                (Err(e), _) => {
                    let pos = p.default.map_or(p.pos, |a| &a.pos);
                    return Err(eval_error(
                        texts,
                        pos,
                        &format!("variable {:?}", p.name),
                        &e,
                    ));
                }
            };
            values.insert(p.name.to_string(), value);
            progress = true;
        }
        pending = still;
        if pending.is_empty() {
            validate(files, &values, texts)?;
            return Ok(values);
        }
        if !progress {
            let (pos, e) = first_error.expect("a deferred variable has an error");
            return Err(eval_error(
                texts,
                &pos,
                "variables refer to each other in a cycle",
                &e,
            ));
        }
    }
}

/// Checks every variable's `validation` blocks (buildx's): a
/// `condition` that is not true fails with its `error_message`.
fn validate(
    files: &[RawFile],
    values: &BTreeMap<String, Value>,
    texts: &Texts,
) -> Result<(), BakeError> {
    let mut ctx = Context::new();
    functions::declare_all(&mut ctx);
    user_functions::declare(&mut ctx);
    user_functions::set_vars(values);
    for (k, v) in values {
        ctx.declare_var(k.as_str(), v.clone());
    }
    for block in files
        .iter()
        .flat_map(|f| &f.blocks)
        .filter(|b| b.kind == Kind::Variable)
    {
        for validation in &block.validations {
            let text = texts.get(&block.pos.file).map_or("", String::as_str);
            let Some(condition) = validation.iter().find(|a| a.key == "condition") else {
                return Err(BakeError::invalid(
                    text,
                    block.pos.clone(),
                    format!(
                        "variable {:?}: a validation block needs a condition",
                        block.label
                    ),
                ));
            };
            let what = format!("variable {:?}", block.label);
            let ok = condition
                .expr
                .evaluate(&ctx)
                .map_err(|e| eval_error(texts, &condition.pos, &what, &e))?;
            if ok != Value::Bool(true) {
                let message = match validation.iter().find(|a| a.key == "error_message") {
                    Some(m) => m
                        .expr
                        .evaluate(&ctx)
                        .map_err(|e| eval_error(texts, &m.pos, &what, &e))
                        .map(|v| functions::to_string(&v).unwrap_or_else(|_| v.to_string()))?,
                    None => "the condition is false".to_string(),
                };
                return Err(BakeError::invalid(
                    text,
                    condition.pos.clone(),
                    format!(
                        "validation failed for variable {:?}: {message}",
                        block.label
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An environment value typed like the variable's default, as buildx
/// converts it (bool and number defaults parse the value).
fn typed_from_env(default: &Value, env: &str) -> Result<Value, String> {
    match default {
        Value::Bool(_) => parse_bool(env)
            .map(Value::Bool)
            .ok_or_else(|| "expected a bool".to_string()),
        Value::Number(_) => {
            if let Ok(i) = env.parse::<i64>() {
                return Ok(Value::from(i));
            }
            env.parse::<f64>()
                .ok()
                .and_then(hcl::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| "expected a number".to_string())
        }
        _ => Ok(Value::from(env)),
    }
}

/// The evaluated blocks of all the files, in order of definition;
/// a target or group defined more than once appears more than once.
pub(crate) struct Evaluated {
    pub targets: Vec<Target>,
    pub groups: Vec<Group>,
    pub variables: Vec<Variable>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The files' `function` blocks, checked: `params` a list of names,
/// `variadic_params` a name, `result` an expression.
fn user_funcs(files: &[RawFile], texts: &Texts) -> Result<Vec<UserFunc>, BakeError> {
    let mut out: Vec<UserFunc> = Vec::new();
    for block in files
        .iter()
        .flat_map(|f| &f.blocks)
        .filter(|b| b.kind == Kind::Function)
    {
        let invalid = |pos: &Pos, message: String| {
            let text = texts.get(&pos.file).map_or("", String::as_str);
            BakeError::invalid(text, pos.clone(), message)
        };
        let name_of = |e: &hcl::Expression| match e {
            hcl::Expression::Variable(v) => Some(v.as_str().to_string()),
            hcl::Expression::String(s) => Some(s.clone()),
            _ => None,
        };
        let mut f = UserFunc {
            name: block.label.clone(),
            params: Vec::new(),
            variadic: None,
            result: hcl::Expression::Null,
        };
        let mut has_result = false;
        for a in &block.attrs {
            match a.key.as_str() {
                "params" => {
                    let hcl::Expression::Array(items) = &a.expr else {
                        return Err(invalid(&a.pos, "params must be a list of names".into()));
                    };
                    for item in items {
                        f.params.push(name_of(item).ok_or_else(|| {
                            invalid(&a.pos, "params must be a list of names".into())
                        })?);
                    }
                }
                "variadic_params" => {
                    f.variadic =
                        Some(name_of(&a.expr).ok_or_else(|| {
                            invalid(&a.pos, "variadic_params must be a name".into())
                        })?);
                }
                "result" => {
                    f.result = a.expr.clone();
                    has_result = true;
                }
                other => {
                    return Err(invalid(
                        &a.pos,
                        format!("unknown function attribute {other:?}"),
                    ));
                }
            }
        }
        if !has_result {
            return Err(invalid(
                &block.pos,
                format!("function {:?} needs a result", block.label),
            ));
        }
        out.retain(|x| x.name != f.name);
        out.push(f);
        if out.len() > user_functions::SLOTS {
            return Err(invalid(
                &block.pos,
                format!(
                    "more than {} functions are defined: not supported",
                    user_functions::SLOTS
                ),
            ));
        }
    }
    Ok(out)
}

/// Evaluates the files' targets and groups.
pub(crate) fn evaluate(
    files: &[RawFile],
    env: &Env<'_>,
    texts: &Texts,
) -> Result<Evaluated, BakeError> {
    let _installed = user_functions::install(user_funcs(files, texts)?);
    let vars = eval_variables(files, env, texts)?;
    user_functions::set_vars(&vars);
    let mut root = Context::new();
    functions::declare_all(&mut root);
    user_functions::declare(&mut root);
    for (k, v) in &vars {
        root.declare_var(k.as_str(), v.clone());
    }
    let invalid = |pos: &Pos, message: String| {
        let text = texts.get(&pos.file).map_or("", String::as_str);
        BakeError::invalid(text, pos.clone(), message)
    };
    let mut out = Evaluated {
        targets: Vec::new(),
        groups: Vec::new(),
        variables: Vec::new(),
    };
    for block in files.iter().flat_map(|f| &f.blocks) {
        match block.kind {
            Kind::Function => {}
            Kind::Variable => {
                let description = match block.attrs.iter().find(|a| a.key == "description") {
                    Some(a) => {
                        let v = a
                            .expr
                            .evaluate(&root)
                            .map_err(|e| eval_error(texts, &a.pos, "description", &e))?;
                        string(&v).map_err(|m| invalid(&a.pos, format!("description: {m}")))?
                    }
                    None => None,
                };
                let value = vars.get(&block.label).cloned().unwrap_or_default();
                let variable = Variable {
                    name: block.label.clone(),
                    kind: match &value {
                        Value::Null => "null",
                        Value::Bool(_) => "bool",
                        Value::Number(_) => "number",
                        Value::String(_) => "string",
                        Value::Array(_) => "list",
                        Value::Object(_) => "map",
                    },
                    value: functions::to_string(&value).unwrap_or_else(|_| value.to_string()),
                    description,
                };
                out.variables.retain(|v| v.name != variable.name);
                out.variables.push(variable);
            }
            Kind::Group => {
                if !valid_name(&block.label) {
                    return Err(invalid(
                        &block.pos,
                        format!(
                            "invalid group name {:?}: only letters, digits, _ and - are allowed",
                            block.label
                        ),
                    ));
                }
                let mut group = Group {
                    name: block.label.clone(),
                    ..Group::default()
                };
                for a in &block.attrs {
                    let v = a
                        .expr
                        .evaluate(&root)
                        .map_err(|e| eval_error(texts, &a.pos, &a.key, &e))?;
                    match a.key.as_str() {
                        "targets" => {
                            group.targets = strings(&v)
                                .map_err(|m| invalid(&a.pos, format!("targets: {m}")))?
                                .unwrap_or_default()
                        }
                        "description" => {
                            group.description = string(&v)
                                .map_err(|m| invalid(&a.pos, format!("description: {m}")))?
                        }
                        "name" | "matrix" => {
                            return Err(invalid(
                                &a.pos,
                                format!("{} is not supported for groups", a.key),
                            ));
                        }
                        other => {
                            return Err(invalid(
                                &a.pos,
                                format!("unknown group attribute {other:?}"),
                            ));
                        }
                    }
                }
                out.groups.push(group);
            }
            // In passes below: targets may refer to each other.
            Kind::Target => {}
        }
    }
    eval_targets(files, &root, texts, &mut out)?;
    Ok(out)
}

/// Evaluates the target blocks. An expression may refer to another
/// target's attributes (`target.base.tags`, `target.app.name`), so
/// blocks are evaluated in passes with a `target` object of the ones done
/// so far (and every block's `name`); a block that fails waits for the
/// next pass, until a pass makes no progress, when the first remaining
/// block's error is the answer. The targets keep their blocks' order.
fn eval_targets(
    files: &[RawFile],
    root: &Context<'_>,
    texts: &Texts,
    out: &mut Evaluated,
) -> Result<(), BakeError> {
    let blocks: Vec<&RawBlock> = files
        .iter()
        .flat_map(|f| &f.blocks)
        .filter(|b| b.kind == Kind::Target)
        .collect();
    let mut known = hcl::Map::new();
    for b in &blocks {
        let mut attrs = hcl::Map::new();
        attrs.insert("name".to_string(), Value::from(b.label.as_str()));
        known.insert(b.label.clone(), Value::Object(attrs));
    }
    type Done = (Vec<Target>, Option<Vec<String>>);
    let mut done: Vec<Option<Done>> = vec![None; blocks.len()];
    loop {
        let mut progress = false;
        let mut first_error = None;
        for (i, block) in blocks.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let mut ctx = root.clone();
            ctx.declare_var("target", Value::Object(known.clone()));
            let (mut targets, mut values) = (Vec::new(), Vec::new());
            match eval_target(block, &ctx, texts, &mut targets, &mut values) {
                Ok(renamed) => {
                    for (name, attrs) in values {
                        // A target defined twice: the later block's values.
                        let entry = known
                            .entry(name)
                            .or_insert_with(|| Value::Object(hcl::Map::new()));
                        if let Value::Object(existing) = entry {
                            existing.extend(attrs);
                        }
                    }
                    done[i] = Some((targets, renamed));
                    progress = true;
                }
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        match first_error {
            None => break,
            Some(e) if !progress => return Err(e),
            Some(_) => {}
        }
    }
    for (block, result) in blocks.iter().zip(done) {
        let (targets, renamed) = result.expect("every block evaluated");
        out.targets.extend(targets);
        if let Some(names) = renamed {
            out.groups.push(Group {
                name: block.label.clone(),
                description: None,
                targets: names,
            });
        }
    }
    Ok(())
}

/// Evaluates one target block, once per matrix combination; returns the
/// names it produced when a matrix renamed it (the block's label then
/// names a group of them, as in buildx).
fn eval_target(
    block: &RawBlock,
    root: &Context<'_>,
    texts: &Texts,
    out: &mut Vec<Target>,
    values: &mut Vec<(String, hcl::Map<String, Value>)>,
) -> Result<Option<Vec<String>>, BakeError> {
    let invalid = |pos: &Pos, message: String| {
        let text = texts.get(&pos.file).map_or("", String::as_str);
        BakeError::invalid(text, pos.clone(), message)
    };
    let matrix_attr = block.attrs.iter().find(|a| a.key == "matrix");
    let name_attr = block.attrs.iter().find(|a| a.key == "name");
    // Each combination: the matrix variables' values, in key order.
    let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    if let Some(a) = matrix_attr {
        let v = a
            .expr
            .evaluate(root)
            .map_err(|e| eval_error(texts, &a.pos, "matrix", &e))?;
        let Value::Object(m) = v else {
            return Err(invalid(&a.pos, "matrix must be a map".into()));
        };
        for (key, values) in m {
            let Value::Array(values) = values else {
                return Err(invalid(
                    &a.pos,
                    format!("matrix values must be a list ({key:?} is not)"),
                ));
            };
            let mut next = Vec::new();
            for combo in &combos {
                for v in &values {
                    let mut c = combo.clone();
                    c.push((key.clone(), v.clone()));
                    next.push(c);
                }
            }
            combos = next;
        }
    }
    let mut names = Vec::new();
    for combo in combos {
        let mut ctx = root.clone();
        for (k, v) in &combo {
            ctx.declare_var(k.as_str(), v.clone());
        }
        let name = match name_attr {
            Some(a) => {
                let v = a
                    .expr
                    .evaluate(&ctx)
                    .map_err(|e| eval_error(texts, &a.pos, "name", &e))?;
                string(&v)
                    .map_err(|m| invalid(&a.pos, format!("name: {m}")))?
                    .unwrap_or_default()
            }
            None if matrix_attr.is_some() => {
                return Err(invalid(
                    &block.pos,
                    format!(
                        "target {:?} has a matrix but no name attribute: each combination needs its own name, e.g. name = \"{}-${{item}}\"",
                        block.label, block.label
                    ),
                ));
            }
            None => block.label.clone(),
        };
        if !valid_name(&name) {
            return Err(invalid(
                name_attr.map_or(&block.pos, |a| &a.pos),
                format!("invalid target name {name:?}: only letters, digits, _ and - are allowed"),
            ));
        }
        let mut t = Target {
            name: name.clone(),
            pos: block.pos.clone(),
            ..Target::default()
        };
        let mut attrs = hcl::Map::new();
        attrs.insert("name".to_string(), Value::from(name.as_str()));
        for a in &block.attrs {
            if a.key == "matrix" || a.key == "name" {
                continue;
            }
            let v = a
                .expr
                .evaluate(&ctx)
                .map_err(|e| eval_error(texts, &a.pos, &a.key, &e))?;
            set_field(&mut t, &a.key, &v).map_err(|m| invalid(&a.pos, m))?;
            attrs.insert(a.key.clone(), v);
        }
        values.push((name.clone(), attrs));
        names.push(name);
        out.push(t);
    }
    let renamed = matrix_attr.is_some() && !(names.len() == 1 && names[0] == block.label);
    Ok(renamed.then_some(names))
}

fn string(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(format!("expected a string, got {other}")),
    }
}

fn strings(v: &Value) -> Result<Option<Vec<String>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .filter(|i| !i.is_null())
            .map(|i| string(i).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(format!("expected a list of strings, got {other}")),
    }
}

fn map(v: &Value) -> Result<BTreeMap<String, String>, String> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(o) => {
            let mut out = BTreeMap::new();
            for (k, v) in o {
                // A null value leaves the key unset (buildx's `null` arg).
                if let Some(s) = string(v).map_err(|m| format!("{k:?}: {m}"))? {
                    out.insert(k.clone(), s);
                }
            }
            Ok(out)
        }
        other => Err(format!("expected a map of strings, got {other}")),
    }
}

fn boolean(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) => parse_bool(s)
            .map(Some)
            .ok_or_else(|| format!("expected a bool, got {s:?}")),
        other => Err(format!("expected a bool, got {other}")),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Sets the target field `key` from an evaluated value.
fn set_field(t: &mut Target, key: &str, v: &Value) -> Result<(), String> {
    let ctx = |m: String| format!("{key}: {m}");
    match key {
        "description" => t.description = string(v).map_err(ctx)?,
        "inherits" => t.inherits = strings(v).map_err(ctx)?.unwrap_or_default(),
        "context" => t.context = string(v).map_err(ctx)?,
        "contexts" => t.contexts = map(v).map_err(ctx)?,
        "dockerfile" => t.dockerfile = string(v).map_err(ctx)?,
        "dockerfile-inline" => t.dockerfile_inline = string(v).map_err(ctx)?,
        "args" => t.args = map(v).map_err(ctx)?,
        "labels" => t.labels = map(v).map_err(ctx)?,
        "tags" => t.tags = strings(v).map_err(ctx)?,
        "target" => t.target = string(v).map_err(ctx)?,
        "platforms" => t.platforms = strings(v).map_err(ctx)?,
        "cache-from" => t.cache_from = strings(v).map_err(ctx)?,
        "cache-to" => t.cache_to = strings(v).map_err(ctx)?,
        "output" => t.output = strings(v).map_err(ctx)?,
        "secret" => t.secret = strings(v).map_err(ctx)?,
        "ssh" => t.ssh = strings(v).map_err(ctx)?,
        "pull" => t.pull = boolean(v).map_err(ctx)?,
        "no-cache" => t.no_cache = boolean(v).map_err(ctx)?,
        "network" => t.network = string(v).map_err(ctx)?,
        "no-cache-filter" => t.no_cache_filter = strings(v).map_err(ctx)?,
        "annotations" => t.annotations = strings(v).map_err(ctx)?,
        "attest" => t.attest = strings(v).map_err(ctx)?,
        k if UNSUPPORTED_KEYS.contains(&k) => {
            if !v.is_null() {
                t.unsupported.insert(k.to_string(), to_json(v));
            }
        }
        other => return Err(format!("unknown target attribute {other:?}")),
    }
    Ok(())
}
