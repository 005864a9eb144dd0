//! `@mention` parsing: which handles a comment or task text names.
//!
//! A mention is `@` followed by a handle of ASCII letters, digits, `_`, `-` and `.`
//! (trailing `.` and `-` are punctuation, not part of it), where the `@` starts the text
//! or follows a character that cannot be part of a word or an address (so
//! `a@example.com` is no mention). Nothing inside a code span (`` `…` ``) or fenced block
//! (```` ``` ````…```` ``` ````) counts. Handles are lowercased and returned once each, in
//! order of first appearance. `@all` is returned like any other handle; the caller
//! decides what it means.

/// Longest handle considered; longer runs are not mentions.
pub const MAX_HANDLE_LEN: usize = 64;

/// The distinct handles mentioned in `text`.
pub fn parse(text: &str) -> Vec<String> {
    let mut handles: Vec<String> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            i = skip_code(&chars, i);
            continue;
        }
        if c == '@' && (i == 0 || !is_word_char(chars[i - 1])) {
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && is_handle_char(chars[end]) {
                end += 1;
            }
            let mut trimmed = end;
            while trimmed > start && matches!(chars[trimmed - 1], '.' | '-') {
                trimmed -= 1;
            }
            let handle: String = chars[start..trimmed]
                .iter()
                .collect::<String>()
                .to_ascii_lowercase();
            let followed_by_at = chars.get(end) == Some(&'@');
            if !handle.is_empty()
                && handle.len() <= MAX_HANDLE_LEN
                && !followed_by_at
                && !handles.contains(&handle)
            {
                handles.push(handle);
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    handles
}

/// Index just past the code span or fence opened at `start` (a run of backticks closed
/// by a run of the same length); an unclosed run is literal text.
fn skip_code(chars: &[char], start: usize) -> usize {
    let mut run = 0;
    while start + run < chars.len() && chars[start + run] == '`' {
        run += 1;
    }
    let mut i = start + run;
    while i < chars.len() {
        if chars[i] == '`' {
            let mut close = 0;
            while i + close < chars.len() && chars[i + close] == '`' {
                close += 1;
            }
            if close == run {
                return i + close;
            }
            i += close;
        } else {
            i += 1;
        }
    }
    start + run
}

fn is_handle_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Characters that make a following `@` part of a word or address.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | '@' | '/' | '`')
}

#[cfg(test)]
mod tests;
