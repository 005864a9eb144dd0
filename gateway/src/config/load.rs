//! Reading a config file: `${ENV}` interpolation, YAML parsing with precise
//! locations, then validation into [`GatewayConfig`].

use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigErrors};
use super::model::GatewayConfig;
use super::surface::ConfigFile;

/// Where the process gets its environment from (tests pass a closure).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads, interpolates, parses and validates `path`. `data_dir` anchors defaults
/// such as the SQLite file. Environment overrides (`DATABASE_URL`, `REDIS_URL`)
/// come from `env`.
pub fn load_file(
    path: &Path,
    data_dir: &Path,
    env: EnvLookup<'_>,
) -> Result<GatewayConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read config file: {e}"),
        })
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    load_str(&text, &file, &base_dir, data_dir, env)
}

/// Like [`load_file`] for text already in memory; `file` is the name used in errors.
pub fn load_str(
    text: &str,
    file: &str,
    base_dir: &Path,
    data_dir: &Path,
    env: EnvLookup<'_>,
) -> Result<GatewayConfig, ConfigErrors> {
    let (text, substituted) = interpolate(text, file, env)?;
    let surface = parse(&text, file)?;
    let hash = content_hash(&text);
    let mut cfg = super::model::validate(surface, file, base_dir, data_dir, env, hash)?;
    cfg.env_values = EnvValues(substituted);
    Ok(cfg)
}

/// The `${NAME}` substitutions made in a config: what the admin API must never
/// show. `Debug` prints the names only.
#[derive(Clone, Default)]
pub struct EnvValues(pub Vec<(String, String)>);

impl std::fmt::Debug for EnvValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

fn parse(text: &str, file: &str) -> Result<ConfigFile, ConfigErrors> {
    let mut key = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |d| {
        serde_path_to_error::deserialize(d).map_err(|e| {
            key = e.path().to_string();
            // `Spanned<T>` adds a `.value` segment of its own.
            if let Some(k) = key.strip_suffix(".value") {
                key.truncate(k.len());
            }
            e.into_inner()
        })
    });
    parsed.map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        if key == "." {
            key.clear();
        }
        let mut message = short_message(&e);
        if let Some(name) = duplicate_key(&message) {
            // The path ends at the mapping, with `?` for a key not read yet.
            let parent = key.strip_suffix('?').unwrap_or(&key).trim_end_matches('.');
            key = if parent.is_empty() {
                name.to_owned()
            } else {
                format!("{parent}.{name}")
            };
            message = format!("duplicate key `{name}`: a key may appear only once in a mapping");
        }
        ConfigErrors::single(ConfigError {
            file: file.to_owned(),
            line,
            column,
            key,
            message,
        })
    })
}

/// The key named by serde-saphyr's `duplicate mapping key: NAME, set DuplicateKeyPolicy
/// in Options if acceptable` (advice for programmers, not for whoever edits the file).
fn duplicate_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("duplicate mapping key: ")?;
    Some(
        rest.split_once(", set DuplicateKeyPolicy")
            .map_or(rest, |(name, _)| name),
    )
}

/// serde-saphyr renders `error: line L column C: MESSAGE` plus a snippet; keep MESSAGE.
fn short_message(e: &serde_saphyr::Error) -> String {
    let full = e.without_snippet().to_string();
    let first = full.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let message = match first.split_once(": ") {
        Some((place, rest)) if place.starts_with("line ") => rest,
        _ => first,
    };
    without_trailing_place(message).to_owned()
}

/// serde's messages may end with ` at line L, column C`, which the caller already says
/// as `file:L:C`.
fn without_trailing_place(message: &str) -> &str {
    let Some(at) = message.rfind(" at line ") else {
        return message;
    };
    let place = &message[at + " at line ".len()..];
    let is_place = place.split_once(", column ").is_some_and(|(line, column)| {
        !line.is_empty()
            && !column.is_empty()
            && line
                .bytes()
                .chain(column.bytes())
                .all(|b| b.is_ascii_digit())
    });
    if is_place { &message[..at] } else { message }
}

/// Replaces `${NAME}` with the variable's value; `$${` is a literal `${`.
/// Values may not contain line breaks (they would change the YAML's structure).
/// Returns the text and each substitution made (name, value).
type Substitutions = Vec<(String, String)>;

fn interpolate(
    text: &str,
    file: &str,
    env: EnvLookup<'_>,
) -> Result<(String, Substitutions), ConfigErrors> {
    if !text.contains("${") {
        return Ok((text.to_owned(), Vec::new()));
    }
    let mut out = String::with_capacity(text.len());
    let mut substituted = Vec::new();
    let mut errors = Vec::new();
    for (line_no, full_line) in text.split_inclusive('\n').enumerate() {
        // Comments are copied as they are: `# token: ${X}` needs no X.
        let (line, comment) = full_line.split_at(comment_start(full_line));
        let mut rest = line;
        let mut col = 1u64;
        while let Some(pos) = rest.find("${") {
            let escaped = pos > 0 && rest.as_bytes()[pos - 1] == b'$';
            if escaped {
                out.push_str(&rest[..pos - 1]);
                out.push_str("${");
                col += (pos + 2) as u64;
                rest = &rest[pos + 2..];
                continue;
            }
            out.push_str(&rest[..pos]);
            let at = col + rest[..pos].chars().count() as u64;
            let after = &rest[pos + 2..];
            let Some(end) = after.find('}') else {
                errors.push(env_error(
                    file,
                    line_no,
                    at,
                    "",
                    "unclosed `${`: expected `${NAME}`",
                ));
                out.push_str(&rest[pos..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            match (valid, env(name)) {
                (false, _) => errors.push(env_error(
                    file,
                    line_no,
                    at,
                    name,
                    "invalid variable name; expected letters, digits and `_`",
                )),
                (true, None) => errors.push(env_error(
                    file,
                    line_no,
                    at,
                    name,
                    "environment variable is not set",
                )),
                (true, Some(v)) if v.contains(['\n', '\r']) => errors.push(env_error(
                    file,
                    line_no,
                    at,
                    name,
                    "environment variable contains a line break",
                )),
                (true, Some(v)) => {
                    out.push_str(&v);
                    substituted.push((name.to_owned(), v));
                }
            }
            col = at + (name.chars().count() + 3) as u64;
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if errors.is_empty() {
        Ok((out, substituted))
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Byte offset of a YAML comment on this line (a `#` at the start or after
/// white space, outside quotes), or the line's length.
fn comment_start(line: &str) -> usize {
    let mut quote: Option<u8> = None;
    let mut prev = b' ';
    for (i, b) in line.bytes().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'#') if prev == b' ' || prev == b'\t' => return i,
            _ => {}
        }
        prev = b;
    }
    line.len()
}

fn env_error(file: &str, line_no: usize, column: u64, name: &str, message: &str) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        line: line_no as u64 + 1,
        column,
        key: if name.is_empty() {
            String::new()
        } else {
            format!("${{{name}}}")
        },
        message: message.to_owned(),
    }
}

/// A fingerprint of the config text (after interpolation), shown by the admin
/// API and in reload logs to tell which config is active: the first 16 hex
/// digits of its SHA-256, stable across builds and machines.
fn content_hash(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}
