//! The shard value layout.

use super::*;

#[test]
fn records_round_trip_oldest_first_and_the_oldest_go_past_the_cap() {
    let a: (&[u8], State) = (b"route\0ia", [1, 2, 3]);
    let b: (&[u8], State) = (b"route\0ib", [u64::MAX, 0, 7]);
    let value = encode([a, b].iter(), (b"route\0rc", [9, 9, 9]));
    let records = decode(&value);
    assert_eq!(records, vec![a, b, (b"route\0rc".as_slice(), [9, 9, 9])]);

    let keys: Vec<Vec<u8>> = (0..MAX_RECORDS + 5)
        .map(|i| i.to_string().into_bytes())
        .collect();
    let many: Vec<(&[u8], State)> = keys.iter().map(|k| (k.as_slice(), [0, 0, 0])).collect();
    let value = encode(many.iter(), (b"new", [1, 1, 1]));
    let records = decode(&value);
    assert_eq!(records.len(), MAX_RECORDS);
    assert_eq!(records[0].0, b"6");
    assert_eq!(records[MAX_RECORDS - 1].0, b"new");
}

#[test]
fn malformed_values_decode_to_what_is_whole() {
    assert!(decode(&[]).is_empty());
    assert!(decode(&[VERSION]).is_empty());
    assert!(decode(&[99, 1, 0, b'k']).is_empty());
    let mut value = encode(std::iter::empty(), (b"k", [1, 2, 3]));
    value.extend_from_slice(&[5, 0, b'x']);
    assert_eq!(decode(&value), vec![(b"k".as_slice(), [1, 2, 3])]);
}
