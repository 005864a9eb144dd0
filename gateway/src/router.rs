//! Request routing: host, longest path prefix on segment boundaries, method.
//!
//! Routing runs on the normalized path ([`normalize_path`]): dot segments
//! resolved, percent-escapes of unreserved characters decoded, every other
//! escape (including `%2F`) kept. Routes are compiled once per config snapshot;
//! a lookup allocates nothing.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::model::RouteSpec;

/// Compiled routing table of one snapshot.
#[derive(Debug, Default)]
pub struct Router {
    /// Routes with a `host`, by host; each list sorted longest prefix first.
    by_host: HashMap<String, Vec<Entry>>,
    /// Routes without a `host`, longest prefix first.
    any_host: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    prefix: String,
    methods: Vec<http::Method>,
    /// Index of the route in the snapshot.
    route: usize,
}

impl Router {
    pub fn new(routes: &[RouteSpec]) -> Self {
        let mut router = Router::default();
        for (i, r) in routes.iter().enumerate() {
            let entry = Entry {
                prefix: r.path.clone(),
                methods: r.methods.clone(),
                route: i,
            };
            match &r.host {
                Some(h) => router.by_host.entry(h.clone()).or_default().push(entry),
                None => router.any_host.push(entry),
            }
        }
        // Stable sort: among equal prefixes, the route listed first wins.
        router
            .any_host
            .sort_by_key(|e| std::cmp::Reverse(e.prefix.len()));
        for list in router.by_host.values_mut() {
            list.sort_by_key(|e| std::cmp::Reverse(e.prefix.len()));
        }
        router
    }

    /// The route for `host` (without port, any case), normalized `path` and
    /// `method`: host-specific routes first, then host-less ones.
    pub fn find(&self, host: Option<&str>, path: &str, method: &http::Method) -> Option<usize> {
        if let Some(host) = host
            && !self.by_host.is_empty()
        {
            let found = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                self.by_host.get(&host.to_ascii_lowercase())
            } else {
                self.by_host.get(host)
            };
            if let Some(route) = found.and_then(|list| first_match(list, path, method)) {
                return Some(route);
            }
        }
        first_match(&self.any_host, path, method)
    }
}

fn first_match(entries: &[Entry], path: &str, method: &http::Method) -> Option<usize> {
    entries
        .iter()
        .find(|e| {
            prefix_matches(&e.prefix, path) && (e.methods.is_empty() || e.methods.contains(method))
        })
        .map(|e| e.route)
}

/// `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`. `/` matches all.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Normalizes a request path (no query): percent-escapes of unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) decoded, other escapes kept with
/// upper-case hex (so `%2F` stays `%2F`), then `.` and `..` segments resolved
/// (never above the root). Borrows when the path is already normal.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if !needs_normalizing(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    Cow::Owned(remove_dot_segments(&decoded))
}

fn needs_normalizing(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') || b.contains(&b'%') {
        return true;
    }
    // A `.` or `..` segment: "/." or "/.." followed by "/" or the end.
    b.windows(2).enumerate().any(|(i, w)| {
        w == b"/." && {
            let rest = &b[i + 2..];
            rest.is_empty()
                || rest[0] == b'/'
                || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'))
        }
    })
}

fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(b.len() + 1);
    if b.first() != Some(&b'/') {
        out.push('/');
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let c = (h << 4) | l;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(c as char);
            } else {
                out.push('%');
                out.push(b[i + 1].to_ascii_uppercase() as char);
                out.push(b[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        // Copy one UTF-8 character (paths are ASCII in practice, but stay total).
        let ch_len = utf8_len(b[i]);
        let end = (i + ch_len).min(b.len());
        out.push_str(path.get(i..end).unwrap_or("\u{FFFD}"));
        i = end;
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let trailing_slash = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    for seg in path.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    // A trailing "" segment came from a trailing slash; keep exactly one.
    if segments.last() == Some(&"") {
        segments.pop();
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests;
