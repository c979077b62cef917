//! Unit tests of the byte-level segment format and its verifying parser.

use super::*;

fn segment(records: &[(u128, &[u8])]) -> Vec<u8> {
    let mut buf = segment_header().to_vec();
    for (key, payload) in records {
        encode_record(&mut buf, *key, payload);
    }
    buf
}

type Records = Vec<(u128, Vec<u8>)>;

fn collect(buf: &[u8], tolerate: bool) -> Result<(SegmentParse, Records), String> {
    let mut out = Vec::new();
    let parsed = parse_segment(buf, tolerate, |k, p| {
        out.push((k, p.to_vec()));
        Ok::<(), std::convert::Infallible>(())
    })
    .map_err(|e| format!("{e:?}"))?;
    Ok((parsed, out))
}

#[test]
fn record_layout_matches_documented_format() {
    let mut buf = Vec::new();
    encode_record(&mut buf, 0x0102, b"abc");
    assert_eq!(buf.len(), RECORD_HEADER_LEN + 3);
    assert_eq!(&buf[0..4], &3u32.to_le_bytes());
    let mut covered = 0x0102u128.to_le_bytes().to_vec();
    covered.extend_from_slice(b"abc");
    assert_eq!(&buf[4..8], &crc32fast::hash(&covered).to_le_bytes());
    assert_eq!(&buf[8..24], &0x0102u128.to_le_bytes());
    assert_eq!(&buf[24..], b"abc");
    let header = segment_header();
    assert_eq!(&header[..8], b"TNRSEG01");
    assert_eq!(&header[8..10], &1u16.to_le_bytes());
    assert_eq!(&header[10..], &[0u8; 6]);
}

#[test]
fn parses_records_in_order() {
    let buf = segment(&[(1, b"one"), (2, b""), (3, b"three")]);
    let (parsed, out) = collect(&buf, false).unwrap();
    assert_eq!(parsed, SegmentParse { records: 3, valid_end: buf.len(), torn: None });
    assert_eq!(out, vec![(1, b"one".to_vec()), (2, vec![]), (3, b"three".to_vec())]);
}

#[test]
fn partial_record_at_end_is_torn_only_when_tolerated() {
    let mut buf = segment(&[(1, b"one"), (2, b"two")]);
    let good = buf.len();
    let mut extra = Vec::new();
    encode_record(&mut extra, 3, b"three-three");
    buf.extend_from_slice(&extra[..extra.len() - 4]);
    let (parsed, out) = collect(&buf, true).unwrap();
    assert_eq!(parsed.records, 2);
    assert_eq!(parsed.valid_end, good);
    assert!(parsed.torn.is_some());
    assert_eq!(out.len(), 2);
    assert!(collect(&buf, false).unwrap_err().contains("Corrupt"));
}

#[test]
fn zero_filled_tail_is_torn() {
    let mut buf = segment(&[(1, b"one")]);
    let good = buf.len();
    buf.extend_from_slice(&[0u8; 4096]);
    let (parsed, _) = collect(&buf, true).unwrap();
    assert_eq!((parsed.records, parsed.valid_end), (1, good));
}

#[test]
fn bad_checksum_followed_by_valid_record_is_corrupt() {
    let mut buf = segment(&[(1, b"one"), (2, b"two"), (3, b"three")]);
    let second = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 3;
    buf[second + RECORD_HEADER_LEN] ^= 0x40;
    let err = collect(&buf, true).unwrap_err();
    assert!(err.contains("Corrupt") && err.contains(&format!("offset: {second}")), "{err}");
}

#[test]
fn corrupted_length_field_is_corrupt_not_torn() {
    // A flipped bit in the length makes the record run past the end; without
    // the forward probe this would silently truncate the later records.
    let mut buf = segment(&[(1, b"one"), (2, b"two"), (3, b"three")]);
    buf[SEGMENT_HEADER_LEN + 2] ^= 0x01;
    let err = collect(&buf, true).unwrap_err();
    assert!(err.contains("Corrupt"), "{err}");
}

#[test]
fn bad_checksum_on_last_record_is_torn() {
    let mut buf = segment(&[(1, b"one"), (2, b"two")]);
    let last = buf.len() - 1;
    buf[last] ^= 0xff;
    let (parsed, out) = collect(&buf, true).unwrap();
    assert_eq!(parsed.records, 1);
    assert_eq!(out, vec![(1, b"one".to_vec())]);
}

#[test]
fn torn_and_bad_headers() {
    for torn in [&b""[..], &b"TNRS"[..], &[0u8; 10][..], &[0u8; 40][..]] {
        let (parsed, _) = collect(torn, true).unwrap();
        assert_eq!((parsed.records, parsed.valid_end), (0, 0));
        assert!(parsed.torn.is_some());
        assert!(collect(torn, false).is_err());
    }
    let mut bad_magic = segment(&[(1, b"x")]);
    bad_magic[0] = b'X';
    assert!(collect(&bad_magic, true).unwrap_err().contains("magic"));
    let mut future = segment(&[(1, b"x")]);
    future[8] = 2;
    assert!(collect(&future, true).unwrap_err().contains("UnsupportedVersion(2)"));
}

#[test]
fn oversized_length_is_rejected() {
    let mut buf = segment(&[]);
    buf.extend_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_le_bytes());
    buf.extend_from_slice(&[0u8; 20]);
    assert_eq!(
        decode_record(&buf, SEGMENT_HEADER_LEN).unwrap_err(),
        RecordFault::TooLong(MAX_PAYLOAD_LEN as u32 + 1)
    );
}

#[test]
fn lane_names() {
    for ok in ["a", "usage", "subscription_v2", &"a".repeat(64)] {
        assert!(is_valid_lane(ok), "{ok}");
    }
    for bad in ["", "Usage", "1abc", "_a", "a-b", "a/b", "..", "a.b", &"a".repeat(65), "é"] {
        assert!(!is_valid_lane(bad), "{bad}");
    }
}

#[test]
fn segment_names_round_trip() {
    assert_eq!(segment_file_name(42), "00000000000000000042.seg");
    assert_eq!(parse_segment_file_name(&segment_file_name(u64::MAX)), Some(Ok(u64::MAX)));
    assert_eq!(parse_segment_file_name("LOCK"), None);
    assert_eq!(parse_segment_file_name("42.seg"), Some(Err(())));
    assert_eq!(parse_segment_file_name("99999999999999999999.seg"), Some(Err(())));
}
