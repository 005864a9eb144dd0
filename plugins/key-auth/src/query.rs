//! Taking the key's parameter out of a request path's query string.

/// Splits `path` into the path without the parameter `name` (every occurrence) and the
/// first occurrence's value, percent-decoded (`None` when absent).
pub fn take(path: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = path.split_once('?') else {
        return (path.to_owned(), None);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut found = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key).as_deref() == Some(name) {
            if found.is_none() {
                found = Some(decode(value).unwrap_or_default());
            }
        } else if !pair.is_empty() {
            kept.push(pair);
        }
    }
    if found.is_none() {
        return (path.to_owned(), None);
    }
    let mut rest = base.to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        rest.push('#');
        rest.push_str(f);
    }
    (rest, found)
}

/// Percent-decoding (and `+` as space); `None` when the result is not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_is_taken_out() {
        assert_eq!(
            take("/a?x=1&api_key=k1&y=2&api_key=k2", "api_key"),
            ("/a?x=1&y=2".to_owned(), Some("k1".to_owned()))
        );
        assert_eq!(
            take("/a?api_key=a%5Fb", "api_key"),
            ("/a".to_owned(), Some("a_b".to_owned()))
        );
        assert_eq!(take("/a?x=1", "api_key"), ("/a?x=1".to_owned(), None));
        assert_eq!(take("/a", "api_key"), ("/a".to_owned(), None));
        assert_eq!(
            take("/a?api%5Fkey=k", "api_key"),
            ("/a".to_owned(), Some("k".to_owned()))
        );
        assert_eq!(take("/a?k=%zz&x", "k").1, Some("%zz".to_owned()));
        assert_eq!(take("/a?k=%4", "k").1, Some("%4".to_owned()));
    }
}
