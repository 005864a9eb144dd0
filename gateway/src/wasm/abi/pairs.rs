//! The Proxy-Wasm map serialization ("pairs"): a `u32` count, then a `(u32 name length,
//! u32 value length)` per pair, then `name\0value\0` per pair, all little-endian.
//!
//! Parsing follows Envoy's host (`PairsUtil::toPairs`): anything malformed, more than
//! [`MAX_PAIRS`] pairs or more than [`MAX_BYTES`] bytes reads as an empty map, and an
//! empty buffer (or a lone `0`) is an empty map.

/// Most pairs a serialized map may hold.
pub(crate) const MAX_PAIRS: usize = 1024;
/// Largest serialized map accepted from a guest.
pub(crate) const MAX_BYTES: usize = 1024 * 1024;

/// Parses a serialized map; malformed input yields an empty map.
pub(crate) fn parse(buf: &[u8]) -> Vec<(&[u8], &[u8])> {
    try_parse(buf).unwrap_or_default()
}

fn try_parse(buf: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if buf.len() > MAX_BYTES {
        return None;
    }
    let count = read_u32(buf, 0)? as usize;
    if count > MAX_PAIRS {
        return None;
    }
    let mut pos = 4usize.checked_add(count.checked_mul(8)?)?;
    if pos > buf.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let name_len = read_u32(buf, 4 + i * 8)? as usize;
        let value_len = read_u32(buf, 8 + i * 8)? as usize;
        let (name, next) = terminated(buf, pos, name_len)?;
        let (value, next) = terminated(buf, next, value_len)?;
        pos = next;
        pairs.push((name, value));
    }
    (pos == buf.len()).then_some(pairs)
}

/// `len` bytes at `pos` followed by a NUL; returns them and the position after the NUL.
fn terminated(buf: &[u8], pos: usize, len: usize) -> Option<(&[u8], usize)> {
    let end = pos.checked_add(len)?;
    let bytes = buf.get(pos..end)?;
    (*buf.get(end)? == 0).then_some((bytes, end + 1))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Serializes the pairs produced by `pairs` into `out` (cleared first). `pairs` is called
/// three times and must yield the same sequence each time; nothing else is allocated.
pub(crate) fn serialize<'a, I>(pairs: impl Fn() -> I, out: &mut Vec<u8>)
where
    I: Iterator<Item = (&'a [u8], &'a [u8])>,
{
    out.clear();
    let count = pairs().count();
    out.extend_from_slice(&len32(count).to_le_bytes());
    for (name, value) in pairs() {
        out.extend_from_slice(&len32(name.len()).to_le_bytes());
        out.extend_from_slice(&len32(value.len()).to_le_bytes());
    }
    for (name, value) in pairs() {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
}

/// Header names and values are far below 4 GiB; saturate rather than wrap if not.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        serialize(|| pairs.iter().copied(), &mut out);
        out
    }

    #[test]
    fn spec_example_round_trips() {
        let map: &[(&[u8], &[u8])] = &[(b"a", b"1"), (b"b", b"22")];
        let bytes = encode(map);
        let expected: &[u8] = &[
            2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'1', 0, b'b', 0,
            b'2', b'2', 0,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(parse(&bytes), map.to_vec());
    }

    #[test]
    fn empty_forms_parse_as_empty() {
        assert!(parse(b"").is_empty());
        assert!(parse(&[0]).is_empty());
        assert!(parse(&[0, 0, 0, 0]).is_empty());
        assert_eq!(encode(&[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn every_truncation_and_corruption_is_rejected_without_panicking() {
        let map: &[(&[u8], &[u8])] = &[(b"x-key", b"value"), (b"", b""), (b":path", b"/a?b")];
        let bytes = encode(map);
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_empty(), "prefix of {cut} bytes");
        }
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut corrupted = bytes.clone();
                corrupted[at] ^= flip;
                let parsed = parse(&corrupted);
                assert!(parsed.is_empty() || parsed.len() == map.len());
            }
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(parse(&trailing).is_empty());
    }

    #[test]
    fn limits_are_enforced() {
        let mut huge = ((MAX_PAIRS + 1) as u32).to_le_bytes().to_vec();
        huge.resize(4 + (MAX_PAIRS + 1) * 10, 0);
        assert!(parse(&huge).is_empty());
        let mut lengths = 1u32.to_le_bytes().to_vec();
        lengths.extend_from_slice(&u32::MAX.to_le_bytes());
        lengths.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&lengths).is_empty());
    }
}
