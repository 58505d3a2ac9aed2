//! Event-time pages (what `GET /api/audit` serves): events whose times do
//! not follow their ledger order, and a run of 25 sharing one time, come
//! back by `(occurred_at, seq)`, every event exactly once across pages in
//! both directions, with filters, a window and free text (also when the
//! text scan's bound ends a page early); a cursor made before event-time
//! pages (the seq alone) continues after its entry's place in event time;
//! ledger-order searches are unchanged; SQLite reads the pages through the
//! time index without sorting.

use custos_engine::events::search::{After, SearchFilter, build_sql, cursor};
use custos_engine::events::validate::Limits;
use custos_engine::events::{Events, Submitter};
use sea_orm::ConnectionTrait as _;
use serde_json::json;

use crate::support::{TestDb, both_backends, open_ledger};

const MINUTE: i64 = 60_000_000;

/// Follows `next_cursor` to the end; returns (seq, occurred_at µs) per item.
async fn all_pages(events: &Events, f: &SearchFilter) -> Vec<(u64, i64)> {
    let mut f = f.clone();
    let mut out = Vec::new();
    for _ in 0..100 {
        let page = events.search(&f).await.unwrap();
        assert!(page.items.len() <= f.limit);
        out.extend(page.items.iter().map(|e| (e.seq, custos_engine::time::parse_rfc3339(&e.occurred_at).unwrap())));
        let Some(c) = page.next_cursor else { return out };
        let again = SearchFilter::from_pairs(&[("cursor".to_owned(), c)]).unwrap();
        assert_eq!(again.descending, f.descending, "the cursor keeps the order");
        assert!(again.after_time.is_some(), "an event-time cursor carries the time");
        (f.after_seq, f.after_time) = (again.after_seq, again.after_time);
    }
    panic!("more than 100 pages");
}

both_backends! {
    async fn event_time_pages_follow_occurred_at_and_cover_every_event_once(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let mut events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let by = Submitter { principal: "test".into() };
        let t0 = ledger.now_us() - 24 * 60 * MINUTE;
        // 60 events whose times jump around (13 distinct minutes, so some
        // share a time): a late event's time is older than its neighbours';
        // then 25 with one time (a client sending whole seconds, fast).
        let minute = |i: i64| if i < 60 { i * 7 % 13 } else { 20 };
        let items: Vec<_> = (0..85i64)
            .map(|i| {
                json!({
                    "occurred_at": custos_engine::time::rfc3339(t0 + minute(i) * MINUTE),
                    "category": "data_access",
                    "action": if i % 3 == 0 { "record.export" } else { "record.read" },
                    "outcome": "success", "actor": {"id": format!("u-{}", i % 4), "kind": "user"},
                    "source": {"application": "crm"}, "details": {"n": i, "word": if i % 2 == 0 { "even" } else { "odd" }},
                })
            })
            .collect();
        let receipts = events.ingest(&items, None, &by).await.unwrap();
        let stored: Vec<(u64, i64)> = receipts.iter().zip(0..).map(|(r, i): (_, i64)| (r.seq, t0 + minute(i) * MINUTE)).collect();
        let by_time = |keep: &dyn Fn(usize) -> bool, descending: bool| {
            let mut v: Vec<(u64, i64)> = stored.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, k)| *k).collect();
            v.sort_by_key(|&(s, t)| (t, s));
            if descending {
                v.reverse();
            }
            v
        };
        let base = SearchFilter { by_time: true, limit: 7, descending: true, categories: vec!["data_access".into()], ..Default::default() };

        for descending in [true, false] {
            let f = SearchFilter { descending, ..base.clone() };
            let got = all_pages(&events, &f).await;
            assert_eq!(got, by_time(&|_| true, descending), "every event once, by (occurred_at, seq), descending={descending}");
            assert_ne!(
                got.iter().map(|k| k.0).collect::<Vec<_>>(),
                {
                    let mut s: Vec<u64> = stored.iter().map(|k| k.0).collect();
                    s.sort_unstable();
                    if descending { s.reverse() }
                    s
                },
                "the times were chosen so that event-time and ledger order differ"
            );

            // A window and a filter.
            let f = SearchFilter {
                descending,
                actions: vec!["record.export".into()],
                from_us: Some(t0 + 2 * MINUTE),
                to_us: Some(t0 + 9 * MINUTE),
                limit: 3,
                ..base.clone()
            };
            let want = by_time(&|i| i % 3 == 0 && (2..9).contains(&minute(i as i64)), descending);
            assert!(want.len() > 3, "more than one page");
            assert_eq!(all_pages(&events, &f).await, want, "window and action, descending={descending}");

            // Free text pages the same way, also when the scan's bound (9
            // entries here) ends a page before it is full.
            let f = SearchFilter { descending, q: Some("even".into()), limit: 4, ..base.clone() };
            let even = by_time(&|i| i % 2 == 0, descending);
            assert_eq!(all_pages(&events, &f).await, even, "q, descending={descending}");
            events.q_scan_limit = 9;
            let wide = SearchFilter { limit: 10, ..f.clone() };
            let first = events.search(&wide).await.unwrap();
            assert_eq!(first.scanned, Some(9));
            assert!(first.items.len() < 10 && first.next_cursor.is_some(), "ended by the bound: {first:?}");
            for f in [&f, &wide] {
                assert_eq!(all_pages(&events, f).await, even, "q under the scan bound, descending={descending}");
            }
            events.q_scan_limit = 10_000;
        }

        // A cursor from before event-time pages (the seq alone) continues
        // after its entry in event-time order.
        let newest_first = by_time(&|_| true, true);
        let (seq, _) = newest_first[10];
        let old = SearchFilter::from_pairs(&[("cursor".to_owned(), cursor(true, After::Seq(seq)))]).unwrap();
        assert_eq!(old.after_time, None);
        let f = SearchFilter { after_seq: old.after_seq, limit: 5, ..base.clone() };
        let page = events.search(&f).await.unwrap();
        let seqs: Vec<u64> = page.items.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, newest_first[11..16].iter().map(|k| k.0).collect::<Vec<_>>());
        let gone = SearchFilter { after_seq: Some(receipts.last().unwrap().seq + 1000), ..base.clone() };
        let err = events.search(&gone).await.unwrap_err().to_string();
        assert!(err.contains("cursor"), "names the cursor: {err}");

        // Ledger order is unchanged for everyone else (tails, exports, engines).
        let f = SearchFilter { by_time: false, limit: 1000, ..base.clone() };
        let seqs: Vec<u64> = events.search(&f).await.unwrap().items.iter().map(|e| e.seq).collect();
        let mut want: Vec<u64> = stored.iter().map(|k| k.0).collect();
        want.reverse();
        assert_eq!(seqs, want);

        // SQLite reads event-time pages through the time index, sorting only
        // equal times (no sort of the whole window), with and without a
        // window and a cursor.
        let conn = ledger.db().conn();
        let b = conn.get_database_backend();
        if b == sea_orm::DbBackend::Sqlite {
            for f in [
                SearchFilter { actors: vec!["u-1".into()], ..base.clone() },
                SearchFilter { from_us: Some(t0), to_us: Some(t0 + MINUTE), after_seq: Some(5), after_time: Some(t0), ..base.clone() },
            ] {
                let (sql, values) = build_sql(&f, &f.actors, &[], f.after(), 8, b);
                let text = crate::support::sqlite_plan(ledger.db(), &sql, values).await;
                assert!(text.iter().any(|d| d.contains("ledger_entries_by_time")), "{text:?}");
                if f.after_seq.is_none() {
                    assert!(!text.iter().any(|d| d.contains("TEMP B-TREE")), "no sort, not even of equal times: {text:?}");
                } else {
                    // At most 2 x limit rows are merged after a cursor.
                    assert!(!text.iter().any(|d| d.contains("RIGHT PART")), "no sort of equal times: {text:?}");
                    // The rest of the cursor's time is a seek on both
                    // columns, not a walk of the entries already shown.
                    assert!(text.iter().any(|d| d.contains("(occurred_at=? AND seq<?)")), "{text:?}");
                }
            }
        }
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn migration_019_rebuilds_the_time_index_on_a_ledger_written_before_it(backend: Backend) {
        use custos_engine::ledger::verify::{self, VerifyScope};

        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let by = Submitter { principal: "test".into() };
        let t0 = ledger.now_us() - 60 * MINUTE;
        let items: Vec<_> = (0..40i64)
            .map(|i| {
                json!({
                    "occurred_at": custos_engine::time::rfc3339(t0 + (i % 5) * MINUTE), "category": "data_access",
                    "action": "record.read", "outcome": "success", "actor": {"id": "u", "kind": "user"},
                    "source": {"application": "crm"},
                })
            })
            .collect();
        events.ingest(&items, None, &by).await.unwrap();
        ledger.shutdown(tasks).await.unwrap();

        // The schema as it was before migration 019: the old index, and 019
        // not recorded as applied.
        let conn = t.db.conn();
        for sql in [
            "DROP INDEX ledger_entries_by_time",
            "CREATE INDEX ledger_entries_time_filters ON ledger_entries \
             (occurred_at, action, outcome, category, tenant, actor_id, resource_type, seq)",
            "DELETE FROM seaql_migrations WHERE version = 'm20261214_000019_time_index_order'",
        ] {
            conn.execute_unprepared(sql).await.unwrap();
        }
        assert_eq!(t.db.pending_migrations().await.unwrap(), vec!["m20261214_000019_time_index_order".to_owned()]);
        t.db.migrate().await.unwrap();
        assert!(t.db.pending_migrations().await.unwrap().is_empty());
        let b = conn.get_database_backend();
        let names_sql = match b {
            sea_orm::DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger_entries'",
            _ => "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'ledger_entries'",
        };
        let names: Vec<String> = conn
            .query_all_raw(custos_engine::storage::stmt_for(b, names_sql, vec![]))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect();
        assert!(names.contains(&"ledger_entries_by_time".to_owned()), "{names:?}");
        assert!(!names.contains(&"ledger_entries_time_filters".to_owned()), "{names:?}");

        // The ledger written before still verifies, and pages through it.
        let (ledger, tasks) = open_ledger(&t.db).await;
        let report =
            verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let f = SearchFilter { by_time: true, descending: true, limit: 6, actors: vec!["u".into()], ..Default::default() };
        let got = all_pages(&events, &f).await;
        assert_eq!(got.len(), 40);
        assert!(got.windows(2).all(|w| (w[0].1, w[0].0) > (w[1].1, w[1].0)), "by (occurred_at, seq), newest first");
        ledger.shutdown(tasks).await.unwrap();
    }
}
