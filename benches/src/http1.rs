//! Just enough HTTP/1.1 request framing for the bench upstream: find the end of a
//! request head, read `Content-Length`, `Transfer-Encoding` and `Connection`, and say
//! how many body bytes follow. No allocation; the caller owns the buffer.

/// Largest request head the upstream accepts (nginx's default large buffer is 8 KiB ×4).
pub const MAX_HEAD: usize = 64 * 1024;

/// What [`parse_head`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// No `\r\n\r\n` yet: read more (unless the buffer already holds [`MAX_HEAD`] bytes).
    Incomplete,
    /// A complete head of `len` bytes, followed by `body` bytes of body.
    Complete {
        len: usize,
        body: u64,
        /// The client asked to close (`Connection: close`, or HTTP/1.0 without keep-alive).
        close: bool,
    },
    /// Something this upstream won't frame (chunked bodies, bad `Content-Length`,
    /// oversized head): answer 400 and close.
    Invalid(&'static str),
}

/// Parses the request head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Head {
    let Some(end) = find_head_end(buf) else {
        return if buf.len() >= MAX_HEAD {
            Head::Invalid("request head too large")
        } else {
            Head::Incomplete
        };
    };
    let head = &buf[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let http10 = request_line.ends_with(b"HTTP/1.0");
    let mut body: Option<u64> = None;
    let mut close = http10;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Head::Invalid("header line without a colon");
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = parse_decimal(value) else {
                return Head::Invalid("invalid Content-Length");
            };
            if body.is_some_and(|b| b != n) {
                return Head::Invalid("conflicting Content-Length headers");
            }
            body = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Head::Invalid("Transfer-Encoding is not supported by the bench upstream");
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    Head::Complete {
        len: end,
        body: body.unwrap_or(0),
        close,
    }
}

/// Length of the head including its final `\r\n\r\n`, if it is all there.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn get_without_body_keeps_alive() {
        assert_eq!(
            parse_head(GET),
            Head::Complete {
                len: GET.len(),
                body: 0,
                close: false
            }
        );
    }

    #[test]
    fn every_split_point_is_incomplete_until_the_end() {
        for cut in 0..GET.len() {
            assert_eq!(parse_head(&GET[..cut]), Head::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn content_length_and_close() {
        let req = b"POST /x HTTP/1.1\r\ncontent-length: 5\r\nConnection: Close\r\n\r\nhello";
        assert_eq!(
            parse_head(req),
            Head::Complete {
                len: req.len() - 5,
                body: 5,
                close: true
            }
        );
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.0\r\n\r\n"),
            Head::Complete { close: true, .. }
        ));
        let ka = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        assert!(matches!(
            parse_head(ka),
            Head::Complete { close: false, .. }
        ));
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        for bad in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(bad), Head::Invalid(_)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse_head(&vec![b'a'; MAX_HEAD]),
            Head::Invalid(_)
        ));
    }
}
