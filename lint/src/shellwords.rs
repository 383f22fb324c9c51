//! Just enough shell to recognize commands in a RUN: the text is cut into
//! simple commands at `&&`, `||`, `;`, `|` and newlines, each into words at
//! whitespace (quotes dropped, line continuations joined). No expansion:
//! the rules look for literal program names such as `apt-get install`.

/// The simple commands of `text`, each as its words; leading `sudo`,
/// `env VAR=x`, `VAR=x` assignments and `exec` are skipped.
pub(crate) fn commands(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    let flush_word = |word: &mut String, cur: &mut Vec<String>| {
        if !word.is_empty() {
            cur.push(std::mem::take(word));
        }
    };
    let flush_cmd = |cur: &mut Vec<String>, out: &mut Vec<Vec<String>>| {
        let words = std::mem::take(cur);
        let words = strip_prefixes(words);
        if !words.is_empty() {
            out.push(words);
        }
    };
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else {
                word.push(c);
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '\\' => {
                if let Some(&n) = chars.peek() {
                    chars.next();
                    if n != '\n' {
                        word.push(n);
                    } else {
                        flush_word(&mut word, &mut cur);
                    }
                }
            }
            ' ' | '\t' | '\r' => flush_word(&mut word, &mut cur),
            '\n' | ';' | '|' | '&' | '(' | ')' | '{' | '}' => {
                flush_word(&mut word, &mut cur);
                flush_cmd(&mut cur, &mut out);
            }
            _ => word.push(c),
        }
    }
    flush_word(&mut word, &mut cur);
    flush_cmd(&mut cur, &mut out);
    out
}

fn strip_prefixes(mut words: Vec<String>) -> Vec<String> {
    while let Some(first) = words.first() {
        let skip = matches!(
            first.as_str(),
            "sudo"
                | "exec"
                | "env"
                | "then"
                | "do"
                | "else"
                | "time"
                | "nohup"
                | "!"
                | "if"
                | "while"
        ) || (first.contains('=')
            && !first.starts_with('-')
            && first.split('=').next().is_some_and(|k| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }));
        if !skip {
            break;
        }
        words.remove(0);
    }
    words
}

/// The program's base name (`/usr/bin/apt-get` → `apt-get`).
pub(crate) fn program(cmd: &[String]) -> &str {
    cmd.first()
        .map_or("", |p| p.rsplit('/').next().unwrap_or(p))
}

/// The first word after the program that is not an option.
pub(crate) fn subcommand(cmd: &[String]) -> &str {
    cmd.iter()
        .skip(1)
        .find(|w| !w.starts_with('-'))
        .map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_simple_commands() {
        let c = commands(
            "apt-get update && \\\n  DEBIAN_FRONTEND=noninteractive apt-get install -y 'curl' ; echo \"a && b\"",
        );
        assert_eq!(c[0], ["apt-get", "update"]);
        assert_eq!(c[1], ["apt-get", "install", "-y", "curl"]);
        assert_eq!(c[2], ["echo", "a && b"]);
        assert_eq!(program(&["/usr/bin/pip3".to_string()]), "pip3");
    }
}
