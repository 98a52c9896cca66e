//! Property tests of the host side's parsers of bytes that come from the guest: the NDJSON
//! event decoder and the JSON answers envd sends. Bounded case counts (seconds each).
//!
//! `tests/corpus/ndjson/NAME.N.ndjson` files are replayed with a 4 KiB line limit: each must
//! yield exactly `N` events before it ends or fails.

use proptest::prelude::*;
use wrenn_envd_client::ndjson::{NdjsonDecoder, NdjsonError};
use wrenn_protocol::{
    EntryInfo, EnvdErrorBody, ExecOutput, Health, Metrics, ProcessEvent, ProcessInfo, PtyEvent,
};

/// Feeds `wire` in chunks of `sizes` (cycled); returns the events before the first error and
/// whether an error ended it. Checks the memory bound after every drain.
fn decode<T: serde::de::DeserializeOwned>(
    wire: &[u8],
    sizes: &[usize],
    max_line: usize,
) -> (Vec<T>, Option<NdjsonError>) {
    let mut d = NdjsonDecoder::new(max_line);
    let mut got = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < wire.len() {
        let n = sizes[i % sizes.len()].max(1).min(wire.len() - at);
        i += 1;
        d.push(&wire[at..at + n]);
        at += n;
        loop {
            match d.next_event::<T>() {
                Some(Ok(ev)) => got.push(ev),
                Some(Err(e)) => return (got, Some(e)),
                None => break,
            }
        }
        assert!(
            d.buffered() <= max_line + n,
            "decoder holds {} bytes",
            d.buffered()
        );
    }
    (got, None)
}

fn event() -> impl Strategy<Value = ProcessEvent> {
    prop_oneof![
        any::<u32>().prop_map(|pid| ProcessEvent::Started { pid }),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|data| ProcessEvent::Stdout { data }),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|data| ProcessEvent::Stderr { data }),
        any::<i32>().prop_map(|exit_code| ProcessEvent::Exit { exit_code }),
        ".{0,40}".prop_map(|message| ProcessEvent::Error { message }),
    ]
}

/// Bytes that look a little like JSON.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..16),
            1 => Just(b"{\"type\":\"stdout\",\"data\":\"".to_vec()),
            1 => Just(b"{\"type\":\"started\",\"pid\":".to_vec()),
            1 => Just(b"\"}\n".to_vec()),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"[[[[[[[[".to_vec()),
            1 => Just(b"\\u0000\\ud800".to_vec()),
        ],
        0..40,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_events_round_trip_through_any_split(
        events in prop::collection::vec(event(), 0..20),
        sizes in prop::collection::vec(1usize..500, 1..6),
    ) {
        let mut wire = Vec::new();
        for ev in &events {
            wire.extend(serde_json::to_vec(ev).unwrap());
            wire.push(b'\n');
        }
        let (got, err) = decode::<ProcessEvent>(&wire, &sizes, wrenn_protocol::NDJSON_LINE_MAX);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, events);
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded(
        wire in jsonish(),
        sizes in prop::collection::vec(1usize..200, 1..6),
        max_line in 16usize..512,
    ) {
        let _ = decode::<ProcessEvent>(&wire, &sizes, max_line);
        let _ = decode::<PtyEvent>(&wire, &sizes, max_line);
    }

    #[test]
    fn a_long_line_is_refused_not_buffered(len in 600usize..5000, chunk in 1usize..700) {
        let mut wire = b"{\"type\":\"stdout\",\"data\":\"".to_vec();
        wire.resize(len, b'A');
        let (got, err) = decode::<ProcessEvent>(&wire, &[chunk], 512);
        prop_assert!(got.is_empty());
        prop_assert_eq!(err, Some(NdjsonError::LineTooLong { limit: 512 }));
    }

    #[test]
    fn json_answers_never_panic(wire in jsonish()) {
        // Every JSON answer the host parses from envd.
        let _ = serde_json::from_slice::<ExecOutput>(&wire);
        let _ = serde_json::from_slice::<EnvdErrorBody>(&wire);
        let _ = serde_json::from_slice::<Vec<EntryInfo>>(&wire);
        let _ = serde_json::from_slice::<Vec<ProcessInfo>>(&wire);
        let _ = serde_json::from_slice::<Health>(&wire);
        let _ = serde_json::from_slice::<Metrics>(&wire);
    }
}

#[test]
fn corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/ndjson");
    let mut seen = 0;
    for ent in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = ent.expect("corpus entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".ndjson") else {
            continue;
        };
        let want: usize = stem
            .rsplit('.')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name}: name must be NAME.N.ndjson"));
        let wire = std::fs::read(&path).expect("read corpus file");
        for sizes in [&[1usize][..], &[5, 13], &[1 << 20]] {
            let (got, _) = decode::<ProcessEvent>(&wire, sizes, 4096);
            assert_eq!(got.len(), want, "{name} in chunks of {sizes:?}: {got:?}");
            let _ = decode::<PtyEvent>(&wire, sizes, 4096);
            let _ = serde_json::from_slice::<ExecOutput>(&wire);
        }
        seen += 1;
    }
    assert!(seen >= 10, "corpus has only {seen} files");
}
