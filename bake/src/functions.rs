//! The HCL functions bake files call: the part of buildx's standard
//! library (go-cty's stdlib plus buildx's own `timestamp`, `equal`,
//! `notequal`, …) that bake files in the wild use. Each one is a plain
//! `fn(FuncArgs) -> Result<Value, String>`, hcl-rs's function signature;
//! arity and argument types are checked by hcl-rs from the [`FuncDef`]
//! before the function runs.

use hcl::Value;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};

/// Declares every function in `ctx`.
pub(crate) fn declare_all(ctx: &mut Context<'_>) {
    use ParamType::{Any, Array, Bool, Number, Object, String as Str};
    let arr = |t: ParamType| Array(Box::new(t));
    let obj = |t: ParamType| Object(Box::new(t));
    let f = |params: Vec<ParamType>, variadic: Option<ParamType>, func: hcl::eval::Func| {
        let mut b = FuncDef::builder().params(params);
        if let Some(v) = variadic {
            b = b.variadic_param(v);
        }
        b.build(func)
    };
    let defs: Vec<(&str, FuncDef)> = vec![
        // strings
        ("lower", f(vec![Str], None, lower)),
        ("upper", f(vec![Str], None, upper)),
        ("title", f(vec![Str], None, title)),
        ("trimspace", f(vec![Str], None, trimspace)),
        ("trim", f(vec![Str, Str], None, trim)),
        ("trimprefix", f(vec![Str, Str], None, trimprefix)),
        ("trimsuffix", f(vec![Str, Str], None, trimsuffix)),
        ("chomp", f(vec![Str], None, chomp)),
        ("join", f(vec![Str], Some(arr(Any)), join)),
        ("split", f(vec![Str, Str], None, split)),
        ("replace", f(vec![Str, Str, Str], None, replace)),
        ("regex_replace", f(vec![Str, Str, Str], None, regex_replace)),
        ("regexreplace", f(vec![Str, Str, Str], None, regex_replace)),
        ("regex", f(vec![Str, Str], None, regex_match)),
        ("substr", f(vec![Str, Number, Number], None, substr)),
        ("strlen", f(vec![Str], None, strlen)),
        ("format", f(vec![Str], Some(Any), format)),
        ("indent", f(vec![Number, Str], None, indent)),
        ("sanitize", f(vec![Str], None, sanitize)),
        // logic and comparison
        ("equal", f(vec![Any, Any], None, equal)),
        ("notequal", f(vec![Any, Any], None, notequal)),
        ("and", f(vec![Bool, Bool], None, and)),
        ("or", f(vec![Bool, Bool], None, or)),
        ("not", f(vec![Bool], None, not)),
        ("coalesce", f(vec![], Some(Any), coalesce)),
        ("coalescelist", f(vec![], Some(Any), coalescelist)),
        // numbers
        ("add", f(vec![Number, Number], None, add)),
        ("subtract", f(vec![Number, Number], None, subtract)),
        ("multiply", f(vec![Number, Number], None, multiply)),
        ("divide", f(vec![Number, Number], None, divide)),
        ("max", f(vec![], Some(Number), max)),
        ("min", f(vec![], Some(Number), min)),
        ("abs", f(vec![Number], None, abs)),
        // collections
        ("length", f(vec![Any], None, length)),
        ("concat", f(vec![], Some(arr(Any)), concat)),
        ("contains", f(vec![arr(Any), Any], None, contains)),
        ("distinct", f(vec![arr(Any)], None, distinct)),
        ("flatten", f(vec![arr(Any)], None, flatten)),
        ("element", f(vec![arr(Any), Number], None, element)),
        ("reverse", f(vec![arr(Any)], None, reverse)),
        ("sort", f(vec![arr(Str)], None, sort)),
        ("keys", f(vec![obj(Any)], None, keys)),
        ("values", f(vec![obj(Any)], None, values)),
        ("lookup", f(vec![obj(Any), Str, Any], None, lookup)),
        ("merge", f(vec![], Some(obj(Any)), merge)),
        // time
        ("timestamp", f(vec![], None, timestamp)),
        ("formatdate", f(vec![Str, Str], None, formatdate)),
    ];
    for (name, def) in defs {
        ctx.declare_func(name, def);
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn n(v: &Value) -> f64 {
    v.as_f64().unwrap_or_default()
}

fn num(x: f64) -> Result<Value, String> {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        // An integer prints as one ("3", not "3.0"), as cty's do.
        return Ok(Value::from(x as i64));
    }
    hcl::Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| "the result is not a finite number".to_string())
}

fn lower(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a[0]).to_lowercase().into())
}

fn upper(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a[0]).to_uppercase().into())
}

fn title(a: FuncArgs) -> Result<Value, String> {
    let mut out = String::new();
    let mut start = true;
    for c in s(&a[0]).chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(out.into())
}

fn trimspace(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a[0]).trim().into())
}

fn trim(a: FuncArgs) -> Result<Value, String> {
    let cut: Vec<char> = s(&a[1]).chars().collect();
    Ok(s(&a[0]).trim_matches(|c| cut.contains(&c)).into())
}

fn trimprefix(a: FuncArgs) -> Result<Value, String> {
    let (v, p) = (s(&a[0]), s(&a[1]));
    Ok(v.strip_prefix(p).unwrap_or(v).into())
}

fn trimsuffix(a: FuncArgs) -> Result<Value, String> {
    let (v, p) = (s(&a[0]), s(&a[1]));
    Ok(v.strip_suffix(p).unwrap_or(v).into())
}

fn chomp(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a[0]).trim_end_matches(['\n', '\r']).into())
}

fn join(a: FuncArgs) -> Result<Value, String> {
    let sep = s(&a[0]);
    let mut parts = Vec::new();
    for list in a.variadic_args() {
        for v in list.as_array().into_iter().flatten() {
            parts.push(to_string(v)?);
        }
    }
    Ok(parts.join(sep).into())
}

fn split(a: FuncArgs) -> Result<Value, String> {
    let (sep, v) = (s(&a[0]), s(&a[1]));
    if v.is_empty() {
        return Ok(Value::Array(vec![Value::from("")]));
    }
    Ok(Value::Array(v.split(sep).map(Value::from).collect()))
}

fn replace(a: FuncArgs) -> Result<Value, String> {
    let (v, find, with) = (s(&a[0]), s(&a[1]), s(&a[2]));
    // cty's replace treats a `/…/` search string as a regular expression.
    if find.len() > 1 && find.starts_with('/') && find.ends_with('/') {
        let re = regex::Regex::new(&find[1..find.len() - 1]).map_err(|e| e.to_string())?;
        return Ok(re.replace_all(v, go_template(with)).into_owned().into());
    }
    Ok(v.replace(find, with).into())
}

/// Go's `$1`/`${name}` replacement syntax is regex's, but Go takes `$1x`
/// as the group named `1x` the same way; nothing to translate.
fn go_template(with: &str) -> &str {
    with
}

fn regex_replace(a: FuncArgs) -> Result<Value, String> {
    let re = regex::Regex::new(s(&a[1])).map_err(|e| format!("invalid pattern: {e}"))?;
    Ok(re
        .replace_all(s(&a[0]), go_template(s(&a[2])))
        .into_owned()
        .into())
}

fn regex_match(a: FuncArgs) -> Result<Value, String> {
    let re = regex::Regex::new(s(&a[0])).map_err(|e| format!("invalid pattern: {e}"))?;
    let text = s(&a[1]);
    let caps = re
        .captures(text)
        .ok_or_else(|| "pattern did not match any part of the given string".to_string())?;
    let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
    if names.is_empty() {
        return Ok(caps[0].to_string().into());
    }
    if names.iter().all(Option::is_some) {
        let mut map = hcl::Map::new();
        for name in names.into_iter().flatten() {
            let v = caps.name(name).map_or("", |m| m.as_str());
            map.insert(name.to_string(), Value::from(v));
        }
        return Ok(Value::Object(map));
    }
    Ok(Value::Array(
        (1..caps.len())
            .map(|i| Value::from(caps.get(i).map_or("", |m| m.as_str())))
            .collect(),
    ))
}

fn substr(a: FuncArgs) -> Result<Value, String> {
    let chars: Vec<char> = s(&a[0]).chars().collect();
    let len = chars.len() as i64;
    let mut offset = n(&a[1]) as i64;
    let length = n(&a[2]) as i64;
    if offset < 0 {
        offset += len;
    }
    let offset = offset.clamp(0, len) as usize;
    let end = if length < 0 {
        chars.len()
    } else {
        (offset + length as usize).min(chars.len())
    };
    Ok(chars[offset..end].iter().collect::<String>().into())
}

fn strlen(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(s(&a[0]).chars().count() as u64))
}

/// go-cty's `format`: `%s %d %v %q %f %t %%`, with an optional width.
fn format(a: FuncArgs) -> Result<Value, String> {
    let spec = s(&a[0]);
    let args: Vec<&Value> = a.variadic_args().collect();
    let mut next = 0;
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' || d == '#' {
                flags.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            return Err("format string ends with an unfinished % sequence".to_string());
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .get(next)
            .ok_or_else(|| format!("not enough arguments for %{verb} at position {next}"))?;
        next += 1;
        let text = match verb {
            's' | 'v' => to_string(arg)?,
            'q' => serde_json::to_string(&to_string(arg)?).map_err(|e| e.to_string())?,
            'd' => format!("{}", n(arg) as i64),
            'f' => {
                let precision = flags
                    .split_once('.')
                    .and_then(|(_, p)| p.parse::<usize>().ok())
                    .unwrap_or(6);
                format!("{:.*}", precision, n(arg))
            }
            't' => arg
                .as_bool()
                .ok_or_else(|| "%t needs a bool".to_string())?
                .to_string(),
            other => return Err(format!("unsupported format verb %{other}")),
        };
        let width: usize = flags
            .trim_start_matches(['-', '+', '#'])
            .split('.')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        if flags.starts_with('-') {
            out.push_str(&format!("{text:<width$}"));
        } else {
            out.push_str(&format!("{text:>width$}"));
        }
    }
    if next < args.len() {
        return Err(format!(
            "too many arguments; only {next} used by format string"
        ));
    }
    Ok(out.into())
}

fn indent(a: FuncArgs) -> Result<Value, String> {
    let pad = " ".repeat(n(&a[0]).max(0.0) as usize);
    let text = s(&a[1]);
    Ok(text.replace('\n', &format!("\n{pad}")).into())
}

/// buildx's `sanitize`: every character outside `[A-Za-z0-9_]` becomes `_`.
fn sanitize(a: FuncArgs) -> Result<Value, String> {
    Ok(s(&a[0])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .into())
}

fn equal(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(a[0] == a[1]))
}

fn notequal(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(a[0] != a[1]))
}

fn and(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(
        a[0].as_bool() == Some(true) && a[1].as_bool() == Some(true),
    ))
}

fn or(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(
        a[0].as_bool() == Some(true) || a[1].as_bool() == Some(true),
    ))
}

fn not(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(a[0].as_bool() != Some(true)))
}

/// The first argument that is neither null nor an empty string.
fn coalesce(a: FuncArgs) -> Result<Value, String> {
    a.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty-string arguments".to_string())
}

fn coalescelist(a: FuncArgs) -> Result<Value, String> {
    Ok(a.iter()
        .find(|v| v.as_array().is_some_and(|l| !l.is_empty()))
        .cloned()
        .unwrap_or(Value::Array(Vec::new())))
}

fn add(a: FuncArgs) -> Result<Value, String> {
    num(n(&a[0]) + n(&a[1]))
}

fn subtract(a: FuncArgs) -> Result<Value, String> {
    num(n(&a[0]) - n(&a[1]))
}

fn multiply(a: FuncArgs) -> Result<Value, String> {
    num(n(&a[0]) * n(&a[1]))
}

fn divide(a: FuncArgs) -> Result<Value, String> {
    if n(&a[1]) == 0.0 {
        return Err("divide by zero".to_string());
    }
    num(n(&a[0]) / n(&a[1]))
}

fn max(a: FuncArgs) -> Result<Value, String> {
    let v = a.iter().map(n).reduce(f64::max);
    num(v.ok_or_else(|| "must pass at least one number".to_string())?)
}

fn min(a: FuncArgs) -> Result<Value, String> {
    let v = a.iter().map(n).reduce(f64::min);
    num(v.ok_or_else(|| "must pass at least one number".to_string())?)
}

fn abs(a: FuncArgs) -> Result<Value, String> {
    num(n(&a[0]).abs())
}

fn length(a: FuncArgs) -> Result<Value, String> {
    let len = match &a[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        other => return Err(format!("cannot take the length of {other}")),
    };
    Ok(Value::from(len as u64))
}

fn concat(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(
        a.iter()
            .flat_map(|l| l.as_array().cloned().unwrap_or_default())
            .collect(),
    ))
}

fn contains(a: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(
        a[0].as_array().is_some_and(|l| l.contains(&a[1])),
    ))
}

fn distinct(a: FuncArgs) -> Result<Value, String> {
    let mut out: Vec<Value> = Vec::new();
    for v in a[0].as_array().into_iter().flatten() {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn flatten(a: FuncArgs) -> Result<Value, String> {
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            other => out.push(other.clone()),
        }
    }
    let mut out = Vec::new();
    walk(&a[0], &mut out);
    Ok(Value::Array(out))
}

fn element(a: FuncArgs) -> Result<Value, String> {
    let list = a[0].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Err("cannot use element function with an empty list".to_string());
    }
    let i = n(&a[1]);
    if i < 0.0 {
        return Err("cannot use element function with a negative index".to_string());
    }
    Ok(list[(i as usize) % list.len()].clone())
}

fn reverse(a: FuncArgs) -> Result<Value, String> {
    let mut list = a[0].as_array().cloned().unwrap_or_default();
    list.reverse();
    Ok(Value::Array(list))
}

fn sort(a: FuncArgs) -> Result<Value, String> {
    let mut list: Vec<String> = a[0]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| s(v).to_string())
        .collect();
    list.sort();
    Ok(Value::Array(list.into_iter().map(Value::from).collect()))
}

fn keys(a: FuncArgs) -> Result<Value, String> {
    let mut k: Vec<String> = a[0]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    Ok(Value::Array(k.into_iter().map(Value::from).collect()))
}

fn values(a: FuncArgs) -> Result<Value, String> {
    let Some(o) = a[0].as_object() else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut k: Vec<&String> = o.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| o[k].clone()).collect()))
}

fn lookup(a: FuncArgs) -> Result<Value, String> {
    Ok(a[0]
        .as_object()
        .and_then(|o| o.get(s(&a[1])))
        .cloned()
        .unwrap_or_else(|| a[2].clone()))
}

fn merge(a: FuncArgs) -> Result<Value, String> {
    let mut out = hcl::Map::new();
    for o in a.iter().filter_map(Value::as_object) {
        for (k, v) in o {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

/// Now, as RFC 3339 in UTC (`2024-05-01T12:00:00Z`).
fn timestamp(_a: FuncArgs) -> Result<Value, String> {
    Ok(rbuild_oci::time::rfc3339(rbuild_oci::time::now_secs()).into())
}

/// Terraform's `formatdate(SPEC, RFC3339)`: `YYYY YY MM M DD D hh h mm
/// m ss s` (and `ZZZ`/`Z` for UTC), text in single quotes kept as is.
fn formatdate(a: FuncArgs) -> Result<Value, String> {
    let (spec, ts) = (s(&a[0]), s(&a[1]));
    let bad = || format!("not a valid RFC 3339 timestamp: {ts:?}");
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        ts.get(r).and_then(|x| x.parse().ok()).ok_or_else(bad)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if ts
        .as_bytes()
        .get(10)
        .is_none_or(|c| !matches!(c, b'T' | b't' | b' '))
    {
        return Err(bad());
    }
    let mut out = String::new();
    let chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or_else(|| "unterminated literal '".to_string())?;
            out.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let text = match (c, run) {
            ('Y', 4) => format!("{year:04}"),
            ('Y', 2) => format!("{:02}", year % 100),
            ('M', 2) => format!("{month:02}"),
            ('M', 1) => month.to_string(),
            ('D', 2) => format!("{day:02}"),
            ('D', 1) => day.to_string(),
            ('h', 2) => format!("{hour:02}"),
            ('h', 1) => hour.to_string(),
            ('m', 2) => format!("{minute:02}"),
            ('m', 1) => minute.to_string(),
            ('s', 2) => format!("{second:02}"),
            ('s', 1) => second.to_string(),
            ('Z', 3) => "UTC".to_string(),
            ('Z', 1) => "Z".to_string(),
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "unsupported date format {:?}",
                    chars[i..i + run].iter().collect::<String>()
                ));
            }
            (c, run) => std::iter::repeat_n(c, run).collect(),
        };
        out.push_str(&text);
        i += run;
    }
    Ok(out.into())
}

/// A value as string interpolation shows it.
pub(crate) fn to_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(format!("cannot use {other} as a string")),
    }
}

#[cfg(test)]
mod tests {
    use hcl::eval::Evaluate as _;

    use super::*;

    fn eval(expr: &str) -> Value {
        let mut ctx = Context::new();
        declare_all(&mut ctx);
        let e: hcl::Expression = expr.parse().unwrap();
        e.evaluate(&ctx).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn the_functions_bake_files_use_answer_as_buildx() {
        assert_eq!(eval(r#"lower("AbC")"#), Value::from("abc"));
        assert_eq!(eval(r#"upper("AbC")"#), Value::from("ABC"));
        assert_eq!(
            eval(r#"join(",", ["a", "b"], ["c"])"#),
            Value::from("a,b,c")
        );
        assert_eq!(
            eval(r#"split(",", "a,b")"#),
            Value::Array(vec!["a".into(), "b".into()])
        );
        assert_eq!(eval(r#"format("%s-%d", "v", 3)"#), Value::from("v-3"));
        assert_eq!(eval(r#"format("%q", "x")"#), Value::from("\"x\""));
        assert_eq!(eval(r#"replace("a.b.c", ".", "-")"#), Value::from("a-b-c"));
        assert_eq!(
            eval(r#"regex_replace("v1.2.3", "^v([0-9]+).*", "$1")"#),
            Value::from("1")
        );
        assert_eq!(eval(r#"notequal("a", "")"#), Value::Bool(true));
        assert_eq!(eval(r#"equal(1, 1)"#), Value::Bool(true));
        assert_eq!(eval(r#"and(true, false)"#), Value::Bool(false));
        assert_eq!(eval(r#"or(true, false)"#), Value::Bool(true));
        assert_eq!(eval(r#"coalesce("", null, "x")"#), Value::from("x"));
        assert_eq!(eval(r#"trimprefix("v1.0", "v")"#), Value::from("1.0"));
        assert_eq!(eval(r#"substr("hello", 1, 3)"#), Value::from("ell"));
        assert_eq!(eval(r#"length([1, 2])"#), Value::from(2u64));
        assert_eq!(eval(r#"add(1, 2)"#), Value::from(3));
        assert_eq!(eval(r#"sanitize("a/b:c")"#), Value::from("a_b_c"));
        assert_eq!(
            eval(r#"regex("^(?P<major>[0-9]+)\\.", "12.3")"#)
                .as_object()
                .unwrap()["major"],
            Value::from("12")
        );
        assert_eq!(
            eval(r#"formatdate("YYYYMMDD-hhmm'h'", "2024-05-01T12:34:56Z")"#),
            Value::from("20240501-1234h")
        );
        let ts = eval("timestamp()");
        assert!(ts.as_str().unwrap().ends_with('Z'), "{ts}");
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        let mut ctx = Context::new();
        declare_all(&mut ctx);
        for bad in [
            r#"lower(1, 2)"#,
            r#"format("%s")"#,
            r#"regex_replace("a", "(", "")"#,
            r#"divide(1, 0)"#,
            r#"element([], 0)"#,
        ] {
            let e: hcl::Expression = bad.parse().unwrap();
            assert!(e.evaluate(&ctx).is_err(), "{bad}");
        }
    }
}
