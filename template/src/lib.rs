//! rbuild-template: the small subset of Go's text/template that people
//! use with `docker inspect --format` and `docker images --format`: field
//! paths (`{{.Config.Env}}`), pipelines into `json`, `index`, `join`,
//! `upper`, `lower`, `len`, `print`, `println`, and
//! `range`/`if`/`else`/`end` blocks. Values are JSON values; they print
//! the way Go prints them (`[a b]`, `map[k:v]`, `<no value>`).
//!
//! A library of its own (like ripgrep's globset) so every front end's
//! `--format` shares it; it depends on no rbuild crate.
//!
//! ```
//! let t = rbuild_template::Template::parse("{{.Name}}: {{join .Tags \",\"}}").unwrap();
//! let data = serde_json::json!({"Name": "app", "Tags": ["1.0", "latest"]});
//! assert_eq!(t.render(&data).unwrap(), "app: 1.0,latest");
//! ```

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::disallowed_methods)]

use std::fmt;

use serde_json::Value;

/// A template that failed to parse ([`Template::parse`]) or to run
/// ([`Template::render`]). Displays as Go does, `template: …`; values
/// appear as Go prints them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{{` without its `}}`.
    UnclosedAction,
    /// An `{{end}}` or `{{else}}` outside a block.
    UnexpectedKeyword { keyword: String },
    /// A `range` or `if` without its `{{end}}`.
    MissingEnd { block: String },
    /// A string literal without its closing quote.
    UnterminatedString,
    /// A word that is neither a field, a number nor a function name.
    UnexpectedWord { word: String, action: String },
    /// An empty command in a pipeline (`{{}}`, `{{.A |}}`).
    MissingValue { action: String },
    /// `range` over a value that is not a list, a map or nothing.
    RangeOver { value: String },
    /// A field of a value that is not a map.
    Field { field: String, value: String },
    /// Arguments (or a piped value) given to a field or a literal.
    NotAFunction,
    /// A function called with the wrong number of arguments.
    Arity {
        function: String,
        want: usize,
        got: usize,
    },
    /// `index` without arguments.
    IndexArity,
    /// `index` of a list past its end.
    IndexOutOfRange { index: f64 },
    /// `index` of a value that cannot be indexed by that key.
    Index { value: String, key: String },
    /// `len` of a value that has no length.
    Len { value: String },
    /// A function this subset does not define.
    UndefinedFunction { function: String },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("template: ")?;
        match self {
            TemplateError::UnclosedAction => f.write_str("unclosed action: missing \"}}\""),
            TemplateError::UnexpectedKeyword { keyword } => {
                write!(f, "unexpected {{{{{keyword}}}}}")
            }
            TemplateError::MissingEnd { block } => write!(f, "missing {{{{end}}}} for {block}"),
            TemplateError::UnterminatedString => f.write_str("unterminated string"),
            TemplateError::UnexpectedWord { word, action } => {
                write!(f, "unexpected {word:?} in {action:?}")
            }
            TemplateError::MissingValue { action } => write!(f, "missing value in {action:?}"),
            TemplateError::RangeOver { value } => write!(f, "range can't iterate over {value}"),
            TemplateError::Field { field, value } => {
                write!(f, "can't evaluate field {field} in {value}")
            }
            TemplateError::NotAFunction => f.write_str("can't give an argument to a non-function"),
            TemplateError::Arity {
                function,
                want,
                got,
            } => write!(
                f,
                "wrong number of args for {function}: want {want} got {got}"
            ),
            TemplateError::IndexArity => f.write_str("wrong number of args for index"),
            TemplateError::IndexOutOfRange { index } => write!(f, "index out of range: {index}"),
            TemplateError::Index { value, key } => write!(f, "can't index {value} with {key}"),
            TemplateError::Len { value } => write!(f, "len of {value}"),
            TemplateError::UndefinedFunction { function } => {
                write!(f, "function {function:?} not defined")
            }
        }
    }
}

impl std::error::Error for TemplateError {}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Str(String),
    Num(f64),
    Func(String),
}

type Pipeline = Vec<Vec<Arg>>;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    If(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

enum Piece {
    Text(String),
    Action(String),
}

impl Template {
    /// Parses `text`; `\n`, `\t` escapes are not interpreted (like docker).
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let mut before = rest[..start].to_string();
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(TemplateError::UnclosedAction);
            };
            let mut inner = &after[..end];
            if let Some(i) = inner.strip_prefix('-') {
                inner = i;
                before = before.trim_end().to_string();
            }
            let mut trim_next = false;
            if let Some(i) = inner.strip_suffix('-') {
                inner = i;
                trim_next = true;
            }
            pieces.push(Piece::Text(before));
            pieces.push(Piece::Action(inner.trim().to_string()));
            rest = &after[end + 2..];
            if trim_next {
                rest = rest.trim_start();
            }
        }
        pieces.push(Piece::Text(rest.to_string()));
        let mut iter = pieces.into_iter();
        let (nodes, stop) = parse_nodes(&mut iter)?;
        if let Some(stop) = stop {
            return Err(TemplateError::UnexpectedKeyword { keyword: stop });
        }
        Ok(Template { nodes })
    }

    /// Runs the template on `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        run_nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

/// Parses until `end`/`else` (returned) or the input ends.
fn parse_nodes(
    iter: &mut impl Iterator<Item = Piece>,
) -> Result<(Vec<Node>, Option<String>), TemplateError> {
    let mut nodes = Vec::new();
    while let Some(p) = iter.next() {
        match p {
            Piece::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t));
                }
            }
            Piece::Action(a) => {
                if a == "end" || a == "else" {
                    return Ok((nodes, Some(a)));
                }
                if a.starts_with("/*") {
                    continue;
                }
                let (kw, rest) = a.split_once(char::is_whitespace).unwrap_or((&a, ""));
                if kw == "range" || kw == "if" {
                    let missing_end = || TemplateError::MissingEnd {
                        block: kw.to_string(),
                    };
                    let pipe = parse_pipeline(rest)?;
                    let (body, stop) = parse_nodes(iter)?;
                    let else_body = match stop.as_deref() {
                        Some("end") => Vec::new(),
                        Some("else") => match parse_nodes(iter)? {
                            (b, Some(s)) if s == "end" => b,
                            _ => return Err(missing_end()),
                        },
                        _ => return Err(missing_end()),
                    };
                    nodes.push(if kw == "range" {
                        Node::Range(pipe, body, else_body)
                    } else {
                        Node::If(pipe, body, else_body)
                    });
                } else {
                    nodes.push(Node::Action(parse_pipeline(&a)?));
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_pipeline(text: &str) -> Result<Pipeline, TemplateError> {
    let mut cmds = vec![Vec::new()];
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            cmds.push(Vec::new());
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(o) => s.push(o),
                        None => return Err(TemplateError::UnterminatedString),
                    },
                    Some(o) => s.push(o),
                    None => return Err(TemplateError::UnterminatedString),
                }
            }
            cmds.last_mut().expect("non-empty").push(Arg::Str(s));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            let arg = if word == "." {
                Arg::Field(Vec::new())
            } else if let Some(path) = word.strip_prefix('.') {
                Arg::Field(path.split('.').map(str::to_string).collect())
            } else if let Ok(n) = word.parse::<f64>() {
                Arg::Num(n)
            } else if word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Arg::Func(word)
            } else {
                return Err(TemplateError::UnexpectedWord {
                    word,
                    action: text.to_string(),
                });
            };
            cmds.last_mut().expect("non-empty").push(arg);
        }
    }
    if cmds.iter().any(Vec::is_empty) {
        return Err(TemplateError::MissingValue {
            action: text.to_string(),
        });
    }
    Ok(cmds)
}

fn run_nodes(nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&go_string(&eval_pipeline(p, dot)?)),
            Node::If(p, body, else_body) => {
                if truthy(&eval_pipeline(p, dot)?) {
                    run_nodes(body, dot, out)?;
                } else {
                    run_nodes(else_body, dot, out)?;
                }
            }
            Node::Range(p, body, else_body) => {
                let items: Vec<Value> = match eval_pipeline(p, dot)? {
                    Value::Array(a) => a,
                    Value::Object(m) => m.into_values().collect(),
                    Value::Null => Vec::new(),
                    other => {
                        return Err(TemplateError::RangeOver {
                            value: go_string(&other),
                        });
                    }
                };
                if items.is_empty() {
                    run_nodes(else_body, dot, out)?;
                }
                for item in &items {
                    run_nodes(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
    let mut piped: Option<Value> = None;
    for cmd in p {
        piped = Some(eval_command(cmd, dot, piped)?);
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn eval_arg(a: &Arg, dot: &Value) -> Result<Value, TemplateError> {
    Ok(match a {
        Arg::Field(path) => {
            let mut v = dot;
            for key in path {
                v = match v {
                    Value::Object(m) => m.get(key).unwrap_or(&Value::Null),
                    Value::Null => &Value::Null,
                    _ => {
                        return Err(TemplateError::Field {
                            field: key.clone(),
                            value: go_string(v),
                        });
                    }
                };
            }
            v.clone()
        }
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Arg::Func(name) => return call(name, Vec::new()),
    })
}

fn eval_command(cmd: &[Arg], dot: &Value, piped: Option<Value>) -> Result<Value, TemplateError> {
    match &cmd[0] {
        Arg::Func(name) => {
            let mut args = cmd[1..]
                .iter()
                .map(|a| eval_arg(a, dot))
                .collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            call(name, args)
        }
        single if cmd.len() == 1 => {
            if piped.is_some() {
                return Err(TemplateError::NotAFunction);
            }
            eval_arg(single, dot)
        }
        _ => Err(TemplateError::NotAFunction),
    }
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(TemplateError::Arity {
                function: name.to_string(),
                want: n,
                got: args.len(),
            })
        }
    };
    match name {
        "json" => {
            arity(1)?;
            Ok(Value::String(
                serde_json::to_string(&args[0]).expect("a JSON value serializes"),
            ))
        }
        "index" => {
            if args.is_empty() {
                return Err(TemplateError::IndexArity);
            }
            let mut v = args[0].clone();
            for key in &args[1..] {
                v = match (&v, key) {
                    (Value::Object(m), Value::String(k)) => {
                        m.get(k).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(a), Value::Number(n)) => {
                        let i = n.as_f64().unwrap_or(-1.0);
                        if i < 0.0 || i as usize >= a.len() {
                            return Err(TemplateError::IndexOutOfRange { index: i });
                        }
                        a[i as usize].clone()
                    }
                    (Value::Null, _) => Value::Null,
                    _ => {
                        return Err(TemplateError::Index {
                            value: go_string(&v),
                            key: go_string(key),
                        });
                    }
                };
            }
            Ok(v)
        }
        "join" => {
            arity(2)?;
            let (list, sep) = (&args[0], go_string(&args[1]));
            let items: Vec<String> = match list {
                Value::Array(a) => a.iter().map(go_string).collect(),
                Value::Null => Vec::new(),
                other => vec![go_string(other)],
            };
            Ok(Value::String(items.join(&sep)))
        }
        "upper" => {
            arity(1)?;
            Ok(Value::String(go_string(&args[0]).to_uppercase()))
        }
        "lower" => {
            arity(1)?;
            Ok(Value::String(go_string(&args[0]).to_lowercase()))
        }
        "len" => {
            arity(1)?;
            let n = match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                other => {
                    return Err(TemplateError::Len {
                        value: go_string(other),
                    });
                }
            };
            Ok(Value::from(n))
        }
        "println" => Ok(Value::String(
            args.iter().map(go_string).collect::<Vec<_>>().join(" ") + "\n",
        )),
        "print" => Ok(Value::String(
            args.iter().map(go_string).collect::<String>(),
        )),
        _ => Err(TemplateError::UndefinedFunction {
            function: name.to_string(),
        }),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// How Go's fmt prints a decoded JSON value.
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string_inner).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string_inner(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn go_string_inner(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        other => go_string(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn docker_inspect_idioms() {
        let v = json!({"Id": "sha256:ab", "Config": {"Env": ["A=1", "B=2"], "Cmd": ["sh"],
            "Labels": {"k": "v"}}, "RepoTags": ["busybox:latest"], "Size": 42});
        assert_eq!(render("{{.Id}}", &v), "sha256:ab");
        assert_eq!(render("{{.Config.Env}}", &v), "[A=1 B=2]");
        assert_eq!(render("{{json .Config.Cmd}}", &v), "[\"sh\"]");
        assert_eq!(render("{{.Config.Cmd | json}}", &v), "[\"sh\"]");
        assert_eq!(render("{{index .Config.Labels \"k\"}}", &v), "v");
        assert_eq!(render("{{index .RepoTags 0}}", &v), "busybox:latest");
        assert_eq!(render("{{range .Config.Env}}{{.}};{{end}}", &v), "A=1;B=2;");
        assert_eq!(
            render("{{range .Config.Env -}} {{.}} {{- end}}", &v),
            "A=1B=2"
        );
        assert_eq!(render("{{join .Config.Env \",\"}}", &v), "A=1,B=2");
        assert_eq!(render("{{if .Config.Missing}}y{{else}}n{{end}}", &v), "n");
        assert_eq!(render("{{.Config.Labels}} {{.Size}}", &v), "map[k:v] 42");
        assert_eq!(render("{{.Nope}}", &v), "<no value>");
    }

    #[test]
    fn parse_errors_are_reported() {
        let parse_err = |t: &str| Template::parse(t).unwrap_err().to_string();
        assert_eq!(
            parse_err("{{.A"),
            "template: unclosed action: missing \"}}\""
        );
        assert_eq!(
            parse_err("{{range .A}}x"),
            "template: missing {{end}} for range"
        );
        assert_eq!(parse_err("{{end}}"), "template: unexpected {{end}}");
        assert_eq!(parse_err("{{.A |}}"), "template: missing value in \".A |\"");
        assert_eq!(
            Template::parse("{{nosuch .A}}")
                .unwrap()
                .render(&json!({}))
                .unwrap_err(),
            TemplateError::UndefinedFunction {
                function: "nosuch".into()
            }
        );
    }

    #[test]
    fn run_errors_say_what_go_says() {
        let run_err = |t: &str, v: &Value| {
            Template::parse(t)
                .unwrap()
                .render(v)
                .unwrap_err()
                .to_string()
        };
        let v = json!({"A": [1, 2], "S": "x"});
        assert_eq!(
            run_err("{{index .A 5}}", &v),
            "template: index out of range: 5"
        );
        assert_eq!(
            run_err("{{.S.B}}", &v),
            "template: can't evaluate field B in x"
        );
        assert_eq!(
            run_err("{{upper .S .S}}", &v),
            "template: wrong number of args for upper: want 1 got 2"
        );
        assert_eq!(
            run_err("{{range .S}}{{end}}", &v),
            "template: range can't iterate over x"
        );
    }
}
