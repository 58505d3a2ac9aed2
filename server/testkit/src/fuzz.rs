//! The body of the ingest fuzz target (`fuzz/fuzz_targets/ingest.rs`), kept
//! here so that `cargo test` runs it too (on generated inputs). It feeds
//! arbitrary bytes to everything an unauthenticated-looking client controls
//! before the ledger: the JSON and NDJSON parsers, validation, masking, and
//! the search query parser. None of it may panic, and what validation
//! accepts must be an event that masks and serialises.

use custos_engine::events::mask::{Masker, default_rules};
use custos_engine::events::search::{self, SearchFilter};
use custos_engine::events::validate::{Limits, parse_json, parse_ndjson, validate_batch};

/// Runs one input through the parsers. Panics only on a broken invariant.
pub fn ingest_input(data: &[u8]) {
    let limits = Limits::default();
    let now = 1_790_000_000_000_000;
    static MASKER: std::sync::OnceLock<Masker> = std::sync::OnceLock::new();
    let masker =
        MASKER.get_or_init(|| Masker::new(default_rules()).unwrap_or_else(|e| unreachable!("default rules: {e}")));
    let pseudonym = |v: &str| format!("{:x}", v.len());
    for parsed in [parse_json(data), parse_ndjson(data)] {
        let Ok(items) = parsed else { continue };
        if let Ok(events) = validate_batch(&items, now, &limits) {
            assert!(!events.is_empty() && events.len() <= limits.max_batch);
            for mut e in events {
                let _ = masker.mask_event(&mut e, &pseudonym);
                let text = serde_json::to_string(&e).unwrap_or_else(|err| unreachable!("serialise: {err}"));
                assert!(serde_json::from_str::<custos_engine::events::model::Event>(&text).is_ok(), "round trip");
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (masked, _) = masker.mask_text(text, &pseudonym);
        // Masking never grows text without bound.
        assert!(masked.len() <= text.len() * 4 + 64);
        if let Ok(pairs) = serde_urlencoded_pairs(text)
            && let Ok(mut f) = SearchFilter::from_pairs(&pairs)
        {
            assert!((1..=1000).contains(&f.limit));
            // Event-time order wherever the cursor carries a time (the
            // search looks up an older cursor's time first).
            f.by_time = data.len().is_multiple_of(2) && (f.after_seq.is_none() || f.after_time.is_some());
            let (sql, values) = search::build_sql(
                &f,
                &f.actors,
                &f.resource_ids,
                f.after(),
                f.limit as u64 + 1,
                sea_orm::DbBackend::Sqlite,
            );
            assert_eq!(sql.matches('?').count(), values.len(), "every value is a bound parameter");
        }
    }
}

/// Runs one input through every query-parameter parser of the engine: the
/// range presets (`range=1€` once sliced inside a character), saved
/// queries (percent-decoding, the search filter), and the body counter.
/// None of it may panic; the search filter's time bounds stay ordered.
pub fn query_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(us) = custos_engine::events::saved::parse_range(&text) {
        assert!(us > 0, "a range is a positive span");
    }
    let _ = custos_engine::events::saved::check_query(&text);
    if let Ok(pairs) = serde_urlencoded_pairs(&text)
        && let Ok(f) = SearchFilter::from_pairs(&pairs)
        && let (Some(a), Some(b)) = (f.from_us, f.to_us)
    {
        assert!(a < b, "from < to is enforced");
    }
    let n = custos_engine::events::validate::count_events(data, false)
        + custos_engine::events::validate::count_events(data, true);
    assert!(n <= data.len() + 1, "counted events fit in the body");
}

/// `a=b&c=d` without percent-decoding (enough to reach the filter parser).
fn serde_urlencoded_pairs(text: &str) -> Result<Vec<(String, String)>, ()> {
    Ok(text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    const SEED: &str = r#"{"id":"0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f","occurred_at":"2026-09-21T12:00:00Z","category":"authentication","action":"user.login","outcome":"success","severity":"info","actor":{"id":"ada@example.org","kind":"user","ip":"203.0.113.7"},"source":{"channel":"api"},"details":{"password":"x","card":"4111 1111 1111 1111"}}"#;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            super::ingest_input(&data);
        }

        #[test]
        fn mutated_events_never_panic(pos in 0usize..SEED.len(), len in 0usize..12, with in "[\\PC{}\\[\\]\":,0-9a-z.@ -]{0,12}") {
            let mut s = SEED.to_owned();
            let end = (pos + len).min(s.len());
            if s.is_char_boundary(pos) && s.is_char_boundary(end) {
                s.replace_range(pos..end, &with);
            }
            super::ingest_input(s.as_bytes());
            let batch = format!("[{s},{SEED}]");
            super::ingest_input(batch.as_bytes());
        }

        #[test]
        fn arbitrary_queries_never_panic(q in "[a-z_=&,.*%:0-9TZ+-]{0,80}") {
            super::ingest_input(q.as_bytes());
            super::query_input(q.as_bytes());
        }

        #[test]
        fn arbitrary_text_never_panics_a_query_parser(q in "\\PC{0,40}", unit in "[mhd€é]?") {
            super::query_input(format!("{q}{unit}").as_bytes());
            super::query_input(format!("range={q}{unit}").as_bytes());
            super::query_input(format!("from={q}&to={unit}").as_bytes());
        }
    }

    #[test]
    fn the_seed_is_accepted() {
        let items = super::parse_json(SEED.as_bytes()).unwrap();
        assert!(super::validate_batch(&items, 1_790_000_000_000_000, &super::Limits::default()).is_ok());
        super::ingest_input(SEED.as_bytes());
    }
}
