//! Dockerfiles: parsed into instructions with their line numbers. Supported: `FROM image
//! [AS name]` (stages), `RUN`, `COPY` (from the build context, or `--from=` a stage by name
//! or index, or an image of the store) and `ADD` (from the context; no URLs, no archive
//! extraction), `ENV`, `ARG`, `WORKDIR`, `USER`, `EXPOSE`, `CMD`, `ENTRYPOINT`, `LABEL`.
//! Anything else is refused with its line number, never ignored.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM image [AS name]`: a stage starts.
    From {
        /// The image (or an earlier stage's name).
        image: String,
        /// The stage's name.
        alias: Option<String>,
    },
    /// `RUN` in shell form (`sh -c`) or exec form.
    Run(Vec<String>),
    /// `COPY`/`ADD` sources (relative to the context) to a destination.
    Copy {
        /// Paths in the context.
        sources: Vec<String>,
        /// Where, in the image (relative: to the working directory).
        dest: String,
        /// `--from=`: a stage (name or index) or an image of the store; `None`: the context.
        from: Option<String>,
    },
    /// `ENV` pairs.
    Env(Vec<(String, String)>),
    /// `ARG name[=default]`.
    Arg(String, Option<String>),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `EXPOSE` ports.
    Expose(Vec<String>),
    /// `CMD`.
    Cmd(Vec<String>),
    /// `ENTRYPOINT`.
    Entrypoint(Vec<String>),
    /// `LABEL` pairs.
    Label(Vec<(String, String)>),
}

/// An instruction and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its first line, from 1.
    pub line: usize,
    /// The instruction as written (continuations joined), the cache key's text.
    pub text: String,
    /// What it says.
    pub instruction: Instruction,
}

fn refuse(line: usize, reason: impl Into<String>) -> Error {
    Error::Dockerfile {
        line,
        reason: reason.into(),
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !pending.is_empty() && trimmed.starts_with('#') {
            continue;
        }
        if pending.is_empty() {
            start = line;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        steps.push(step(start, std::mem::take(&mut pending))?);
    }
    if !pending.is_empty() {
        steps.push(step(start, pending)?);
    }
    match steps.first() {
        None => return Err(refuse(1, "the Dockerfile has no instructions")),
        Some(s)
            if !matches!(
                s.instruction,
                Instruction::From { .. } | Instruction::Arg(..)
            ) =>
        {
            return Err(refuse(s.line, "the first instruction must be FROM"));
        }
        _ => {}
    }
    // Stage names are unique, and a COPY --from names a stage before it (or an image).
    let mut names: Vec<Option<&str>> = Vec::new();
    for s in &steps {
        match &s.instruction {
            Instruction::From { alias, .. } => {
                if let Some(a) = alias
                    && names.contains(&Some(a.as_str()))
                {
                    return Err(refuse(s.line, format!("a second stage named {a}")));
                }
                names.push(alias.as_deref());
            }
            Instruction::Copy { from: Some(f), .. } => {
                if let Ok(i) = f.parse::<usize>()
                    && i + 1 >= names.len()
                {
                    return Err(refuse(
                        s.line,
                        format!("COPY --from={i}: no stage {i} before this one"),
                    ));
                }
            }
            _ if names.is_empty() && !matches!(s.instruction, Instruction::Arg(..)) => {
                return Err(refuse(s.line, "the first instruction must be FROM"));
            }
            _ => {}
        }
    }
    Ok(steps)
}

fn step(line: usize, text: String) -> Result<Step> {
    let text = text.trim().to_owned();
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((&text, ""));
    let rest = rest.trim();
    let upper = word.to_ascii_uppercase();
    let need = |what: &str| {
        if rest.is_empty() {
            Err(refuse(line, format!("{upper} needs {what}")))
        } else {
            Ok(())
        }
    };
    // `COPY --from=X`: the one flag taken.
    let (from, rest) = match rest.strip_prefix("--from=") {
        Some(r) if upper == "COPY" => {
            let (f, r) = r.split_once(char::is_whitespace).unwrap_or((r, ""));
            if f.is_empty() {
                return Err(refuse(line, "COPY --from= names nothing"));
            }
            (Some(f.to_owned()), r.trim())
        }
        _ => (None, rest),
    };
    if rest.starts_with("--") && upper != "RUN" {
        return Err(refuse(
            line,
            format!(
                "{upper} flags ({}) are not supported",
                rest.split_whitespace().next().unwrap_or("")
            ),
        ));
    }
    let instruction = match upper.as_str() {
        "FROM" => {
            need("an image")?;
            let parts: Vec<_> = rest.split_whitespace().collect();
            match parts.as_slice() {
                [image] => Instruction::From {
                    image: (*image).to_owned(),
                    alias: None,
                },
                [image, kw, name] if kw.eq_ignore_ascii_case("as") => {
                    let ok = name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
                    if !ok {
                        return Err(refuse(
                            line,
                            format!(
                                "FROM ... AS {name}: a stage name is a letter, then letters, digits, '-', '_' or '.'"
                            ),
                        ));
                    }
                    Instruction::From {
                        image: (*image).to_owned(),
                        alias: Some(name.to_ascii_lowercase()),
                    }
                }
                _ => return Err(refuse(line, "FROM takes an image and an optional AS name")),
            }
        }
        "RUN" => {
            need("a command")?;
            if rest.starts_with("--") {
                return Err(refuse(
                    line,
                    "RUN flags (--mount, --network) are not supported",
                ));
            }
            Instruction::Run(command(line, rest, true)?)
        }
        "CMD" => Instruction::Cmd(command(line, rest, true)?),
        "ENTRYPOINT" => Instruction::Entrypoint(command(line, rest, true)?),
        "COPY" | "ADD" => {
            need("sources and a destination")?;
            let mut parts = if rest.starts_with('[') {
                json_array(line, rest)?
            } else {
                rest.split_whitespace().map(str::to_owned).collect()
            };
            if parts.len() < 2 {
                return Err(refuse(
                    line,
                    format!("{upper} needs sources and a destination"),
                ));
            }
            let dest = parts.pop().unwrap_or_default();
            if upper == "ADD" && parts.iter().any(|p| p.contains("://")) {
                return Err(refuse(
                    line,
                    "ADD of a URL is not supported (a build fetches nothing itself); download it in a RUN",
                ));
            }
            Instruction::Copy {
                sources: parts,
                dest,
                from: from.map(|f| f.to_ascii_lowercase()),
            }
        }
        "ENV" => {
            need("a name and value")?;
            Instruction::Env(pairs(line, rest, true)?)
        }
        "LABEL" => {
            need("a name and value")?;
            Instruction::Label(pairs(line, rest, false)?)
        }
        "ARG" => {
            need("a name")?;
            match rest.split_once('=') {
                Some((k, v)) => Instruction::Arg(k.trim().to_owned(), Some(unquote(v.trim()))),
                None => Instruction::Arg(rest.to_owned(), None),
            }
        }
        "WORKDIR" => {
            need("a directory")?;
            Instruction::Workdir(unquote(rest))
        }
        "USER" => {
            need("a user")?;
            Instruction::User(rest.to_owned())
        }
        "EXPOSE" => {
            need("a port")?;
            let ports = rest
                .split_whitespace()
                .map(|p| {
                    let p = if p.contains('/') {
                        p.to_owned()
                    } else {
                        format!("{p}/tcp")
                    };
                    let (n, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    if n.parse::<u16>().is_ok() && matches!(proto, "tcp" | "udp") {
                        Ok(p)
                    } else {
                        Err(refuse(line, format!("EXPOSE: {p} is not PORT[/tcp|/udp]")))
                    }
                })
                .collect::<Result<_>>()?;
            Instruction::Expose(ports)
        }
        other => {
            return Err(refuse(
                line,
                format!(
                    "{other} is not supported by firepit's builder (supported: FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, EXPOSE, CMD, ENTRYPOINT, LABEL)"
                ),
            ));
        }
    };
    Ok(Step {
        line,
        text,
        instruction,
    })
}

/// Exec form (`["a", "b"]`) or shell form (`sh -c "…"`).
fn command(line: usize, rest: &str, shell: bool) -> Result<Vec<String>> {
    if rest.starts_with('[') {
        json_array(line, rest)
    } else if shell {
        Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_owned()])
    } else {
        Ok(rest.split_whitespace().map(str::to_owned).collect())
    }
}

fn json_array(line: usize, rest: &str) -> Result<Vec<String>> {
    serde_json::from_str(rest)
        .map_err(|e| refuse(line, format!("not a JSON array of strings: {e}")))
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_owned()
    } else {
        s.to_owned()
    }
}

/// `K=V K2="v 2"` or the old `K V` form (with `legacy`).
fn pairs(line: usize, rest: &str, legacy: bool) -> Result<Vec<(String, String)>> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if legacy && !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return Ok(vec![(k.to_owned(), unquote(v))]);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let mut value = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, c) => value.push(c),
            }
            chars.next();
        }
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(refuse(line, format!("malformed NAME=value in {rest:?}")));
        }
        out.push((unquote(&key), value));
    }
    Ok(out)
}

/// Replaces `$NAME` and `${NAME}` from `vars`.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if name.is_empty() {
            out.push('$');
        } else if let Some(v) = vars.get(&name) {
            out.push_str(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_instructions() {
        let steps = parse(
            "# comment\nARG BASE=x\nFROM minimal\nENV A=1 B=\"two words\"\nENV C three\nRUN echo a \\\n  && echo b\nCOPY app /srv/app\nWORKDIR /srv\nUSER 1000\nEXPOSE 8080 53/udp\nCMD [\"./run\", \"--port\", \"8080\"]\nENTRYPOINT /bin/sh\nLABEL a=b\n",
        )
        .unwrap();
        assert_eq!(
            steps[1].instruction,
            Instruction::From {
                image: "minimal".into(),
                alias: None
            }
        );
        assert_eq!(
            steps[2].instruction,
            Instruction::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into())
            ])
        );
        assert_eq!(
            steps[3].instruction,
            Instruction::Env(vec![("C".into(), "three".into())])
        );
        assert_eq!(steps[4].line, 6);
        assert_eq!(
            steps[4].instruction,
            Instruction::Run(vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo a  && echo b".into()
            ])
        );
        assert_eq!(
            steps[8].instruction,
            Instruction::Expose(vec!["8080/tcp".into(), "53/udp".into()])
        );
        assert_eq!(
            steps[9].instruction,
            Instruction::Cmd(vec!["./run".into(), "--port".into(), "8080".into()])
        );
    }

    #[test]
    fn refuses_with_the_line_number() {
        let err = parse("FROM x\n\nHEALTHCHECK CMD true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("HEALTHCHECK"),
            "{err}"
        );
        let err = parse("FROM x AS 1build\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = parse("FROM x AS a\nFROM y AS A\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("second"), "{err}");
        let err = parse("FROM x\nCOPY --from=1 b c\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("no stage 1"),
            "{err}"
        );
        let err = parse("FROM x\nADD --from=a b c\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("flags"), "{err}");
        let err = parse("FROM x\nCOPY --chown=1 b c\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse("FROM x\nADD https://example.invalid/a /a\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("URL"), "{err}");
        assert!(parse("RUN true\n").is_err());
    }

    #[test]
    fn parses_stages() {
        let steps = parse(
            "FROM minimal AS Build\nRUN make\nFROM minimal\nCOPY --from=build /out /app\nCOPY --from=0 /a /b\nCOPY --from=other:1 /c /d\n",
        )
        .unwrap();
        assert_eq!(
            steps[0].instruction,
            Instruction::From {
                image: "minimal".into(),
                alias: Some("build".into())
            }
        );
        let froms: Vec<_> = steps
            .iter()
            .filter_map(|s| match &s.instruction {
                Instruction::Copy { from, .. } => from.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(froms, ["build", "0", "other:1"]);
        assert_eq!(
            steps[3].instruction,
            Instruction::Copy {
                sources: vec!["/out".into()],
                dest: "/app".into(),
                from: Some("build".into())
            }
        );
    }

    #[test]
    fn expands_variables() {
        let vars = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(expand("$A/${A}/$B/x$", &vars), "1/1//x$");
    }
}
