//! Unit tests of the byte-level segment format and its verifying walk.

use super::*;

/// A format-2 segment holding `records`, committed (or not) at the end.
fn segment_with(records: &[(u128, &[u8])], committed: bool) -> Vec<u8> {
    let mut buf = segment_header().to_vec();
    let mut group = Group::new(SEGMENT_HEADER_LEN);
    for (key, payload) in records {
        let at = buf.len();
        encode_record(&mut buf, *key, payload);
        group.push(&buf[at + 4..at + 8]);
    }
    if committed {
        group.commit(records.len() as u64, KIND_COMMIT).encode_twice(&mut buf);
    }
    buf
}

fn segment(records: &[(u128, &[u8])]) -> Vec<u8> {
    segment_with(records, true)
}

/// A format-1 segment (no commit records).
fn legacy_segment(records: &[(u128, &[u8])]) -> Vec<u8> {
    let mut buf = SEGMENT_MAGIC.to_vec();
    buf.extend_from_slice(&1u16.to_le_bytes());
    buf.extend_from_slice(&[0u8; 6]);
    for (key, payload) in records {
        encode_record(&mut buf, *key, payload);
    }
    buf
}

type Records = Vec<(u128, Vec<u8>)>;

fn collect(buf: &[u8], tolerate: bool) -> Result<(SegmentParse, Records), String> {
    let mut out = Vec::new();
    let mode = if tolerate { Mode::Last } else { Mode::Sealed };
    let parsed = parse_segment(buf, 0, mode, |k, p| {
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
    assert_eq!(&header[8..10], &2u16.to_le_bytes());
    assert_eq!(&header[10..14], &crc32fast::hash(&header[..10]).to_le_bytes());
    assert_eq!(&header[14..], &[0u8; 2]);
}

#[test]
fn commit_record_layout_matches_documented_format() {
    let c =
        CommitRecord { records: 7, start: 16, count: 3, digest: 0xdead_beef, kind: KIND_COMMIT };
    let b = c.encode();
    assert_eq!(b.len(), COMMIT_RECORD_LEN);
    assert_eq!(&b[0..4], b"TNRC");
    assert_eq!(&b[4..8], &crc32fast::hash(&b[8..]).to_le_bytes());
    assert_eq!(&b[8..16], &7u64.to_le_bytes());
    assert_eq!(&b[16..24], &16u64.to_le_bytes());
    assert_eq!(&b[24..28], &3u32.to_le_bytes());
    assert_eq!(&b[28..32], &0xdead_beefu32.to_le_bytes());
    assert_eq!(b[32], 1);
    assert_eq!(&b[33..], &[0u8; 7]);
    // The tag sits where a record has its length, above any length a record may have.
    assert!(u32::from_le_bytes(*b"TNRC") as usize > MAX_PAYLOAD_LEN);
}

#[test]
fn parses_records_in_order() {
    let buf = segment(&[(1, b"one"), (2, b""), (3, b"three")]);
    for tolerate in [false, true] {
        let (parsed, out) = collect(&buf, tolerate).unwrap();
        assert_eq!(
            parsed,
            SegmentParse { version: 2, records: 3, valid_end: buf.len(), tail: None }
        );
        assert_eq!(out, vec![(1, b"one".to_vec()), (2, vec![]), (3, b"three".to_vec())]);
    }
}

#[test]
fn records_after_the_last_commit_record_are_a_tail_of_the_last_segment_only() {
    let mut buf = segment(&[(1, b"one"), (2, b"two")]);
    let good = buf.len();
    encode_record(&mut buf, 3, b"complete but never committed");
    let (parsed, out) = collect(&buf, true).unwrap();
    assert_eq!((parsed.records, parsed.valid_end), (2, good));
    let tail = parsed.tail.unwrap();
    assert_eq!(tail.records, 1);
    assert!(tail.reason.contains("after the last commit record"), "{}", tail.reason);
    assert_eq!(out.len(), 2, "the dropped record is never handed out");
    // In a sealed segment they belong to a commit that went on in the next segment.
    let (parsed, out) = collect(&buf, false).unwrap();
    assert_eq!((parsed.records, parsed.valid_end, parsed.tail), (3, buf.len(), None));
    assert_eq!(out.len(), 3);
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
    assert!(parsed.tail.is_some());
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
    assert_eq!(parsed.tail.unwrap().records, 0);
}

#[test]
fn damage_under_a_commit_record_is_corrupt_even_in_the_last_record() {
    let buf = segment(&[(1, b"one"), (2, b"two"), (3, b"three")]);
    let second = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 3;
    let last = second + RECORD_HEADER_LEN + 3;
    for (at, offset) in [(second + RECORD_HEADER_LEN, second), (last + RECORD_HEADER_LEN + 4, last)]
    {
        let mut bad = buf.clone();
        bad[at] ^= 0x40;
        let err = collect(&bad, true).unwrap_err();
        assert!(err.contains("Corrupt") && err.contains(&format!("offset: {offset}")), "{err}");
        assert!(err.contains("commit record"), "{err}");
    }
}

#[test]
fn damage_after_the_last_commit_record_is_torn() {
    let mut buf = segment(&[(1, b"one")]);
    let good = buf.len();
    let at = buf.len();
    encode_record(&mut buf, 2, b"two");
    encode_record(&mut buf, 3, b"three");
    buf[at + RECORD_HEADER_LEN] ^= 0x40;
    let (parsed, out) = collect(&buf, true).unwrap();
    assert_eq!((parsed.records, parsed.valid_end), (1, good));
    assert_eq!(out, vec![(1, b"one".to_vec())]);
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
fn one_damaged_copy_of_the_last_commit_record() {
    let buf = segment(&[(1, b"one"), (2, b"two")]);
    let first = buf.len() - 2 * COMMIT_RECORD_LEN;
    let second = buf.len() - COMMIT_RECORD_LEN;
    // The second copy damaged (or torn): the first is the evidence; nothing is lost.
    let mut bad = buf.clone();
    bad[second + 12] ^= 1;
    let (parsed, out) = collect(&bad, true).unwrap();
    assert_eq!((parsed.records, parsed.valid_end), (2, second));
    assert_eq!(parsed.tail.unwrap().records, 0);
    assert_eq!(out.len(), 2);
    let (parsed, _) = collect(&buf[..second + 7], true).unwrap();
    assert_eq!((parsed.records, parsed.valid_end), (2, second));
    // The first copy damaged: the second still says the records were committed.
    let mut bad = buf.clone();
    bad[first + 12] ^= 1;
    let err = collect(&bad, true).unwrap_err();
    assert!(err.contains(&format!("offset: {first}")) && err.contains("commit record"), "{err}");
    // A lone copy (recovery cut a torn second one) followed by more records is valid.
    let mut lone = buf[..second].to_vec();
    let mut group = Group::new(lone.len());
    let at = lone.len();
    encode_record(&mut lone, 3, b"three");
    group.push(&lone[at + 4..at + 8]);
    group.commit(3, KIND_COMMIT).encode_twice(&mut lone);
    let (parsed, _) = collect(&lone, false).unwrap();
    assert_eq!(parsed.records, 3);
}

#[test]
fn a_commit_record_must_match_the_records_it_covers() {
    let mut buf = segment_with(&[(1, b"one"), (2, b"two")], false);
    // Claims three records where there are two.
    let mut group = Group::new(SEGMENT_HEADER_LEN);
    for pos in [SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 3] {
        group.push(&buf[pos + 4..pos + 8]);
    }
    let at = buf.len();
    group.commit(3, KIND_COMMIT).encode_twice(&mut buf);
    for tolerate in [false, true] {
        let err = collect(&buf, tolerate).unwrap_err();
        assert!(err.contains(&format!("offset: {at}")) && err.contains("does not match"), "{err}");
    }
    // A segment further on in the lane: its commit records count from its base.
    let buf = segment(&[(1, b"one")]);
    assert!(judge::<()>(&buf, 5, Mode::Sealed).is_err());
}

#[test]
fn format_1_segments_are_still_read_with_their_old_rules() {
    let buf = legacy_segment(&[(1, b"one"), (2, b"two")]);
    let (parsed, out) = collect(&buf, false).unwrap();
    assert_eq!((parsed.version, parsed.records, parsed.valid_end), (1, 2, buf.len()));
    assert_eq!(out.len(), 2);
    // An invalid last record with nothing valid after it: a tail.
    let mut torn = buf.clone();
    let last = torn.len() - 1;
    torn[last] ^= 0xff;
    let (parsed, _) = collect(&torn, true).unwrap();
    assert_eq!((parsed.records, parsed.tail.is_some()), (1, true));
    // A commit tag means nothing to format 1.
    let mut tagged = buf.clone();
    CommitRecord { records: 2, start: 16, count: 2, digest: 0, kind: KIND_COMMIT }
        .encode_twice(&mut tagged);
    let (parsed, _) = collect(&tagged, true).unwrap();
    assert_eq!(parsed.records, 2);
    assert!(parsed.tail.unwrap().reason.contains("exceeds maximum"));
}

#[test]
fn torn_and_bad_headers() {
    for torn in [&b""[..], &b"TNRS"[..], &[0u8; 10][..], &[0u8; 16][..]] {
        let (parsed, _) = collect(torn, true).unwrap();
        assert_eq!((parsed.records, parsed.valid_end), (0, 0));
        assert!(parsed.tail.unwrap().header);
        assert!(collect(torn, false).is_err());
    }
    // Zeros longer than a header: records were written after a synced header.
    assert!(collect(&[0u8; 40], true).unwrap_err().contains("zero bytes"));
    let mut bad_magic = segment(&[(1, b"x")]);
    bad_magic[0] = b'X';
    assert!(collect(&bad_magic, true).unwrap_err().contains("magic"));
    // A later format (its header checksum valid) is refused as such; a damaged version is
    // damage.
    let mut future = segment(&[(1, b"x")]);
    future[8] = 3;
    let crc = crc32fast::hash(&future[..10]);
    future[10..14].copy_from_slice(&crc.to_le_bytes());
    assert!(collect(&future, true).unwrap_err().contains("UnsupportedVersion(3)"));
    for at in [8, 9, 10, 13, 14, 15] {
        let mut flipped = segment(&[(1, b"x")]);
        flipped[at] ^= 0x5a;
        let err = collect(&flipped, true).unwrap_err();
        assert!(err.contains("Corrupt"), "byte {at}: {err}");
    }
}

#[test]
fn oversized_length_is_rejected() {
    let mut buf = segment(&[]);
    buf.extend_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_le_bytes());
    buf.extend_from_slice(&[0u8; 20]);
    assert_eq!(
        decode_record(&buf, buf.len() - RECORD_HEADER_LEN).unwrap_err(),
        RecordFault::TooLong(MAX_PAYLOAD_LEN as u32 + 1)
    );
}

#[test]
fn salvage_counts_what_follows_damage() {
    let mut buf = segment(&[(1, b"one"), (2, b"two"), (3, b"three")]);
    let second = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 3;
    buf[second + RECORD_HEADER_LEN] ^= 1;
    let w = walk(&buf, 0).unwrap();
    assert_eq!(w.fault.as_ref().map(|f| f.at), Some(second));
    assert_eq!(salvage(&buf, second, 2), (1, 1));
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
