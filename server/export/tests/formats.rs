//! Exports on both databases: every format written by the engine through
//! these sinks, read back with real readers (csv, the zip of the workbook,
//! qpdf and pdftotext), checked against a signed manifest, and the checks
//! shown to fail on a changed file, a changed manifest and the wrong key.
//! (This crate's one integration-test binary.)

// Tests may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;

use custos_engine::events::export::{self, ExportFormat, ExportProgress, ExportSpec, manifest_note, read_manifest};
use custos_engine::events::validate::Limits;
use custos_engine::events::{Events, Submitter};
use custos_engine::ledger::note::NoteSigner;
use serde_json::json;

use custos_testkit::db::{Backend, TestDb, open_ledger};

fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
    q.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

async fn setup(backend: Backend, n: usize) -> Option<(TestDb, Events, custos_engine::ledger::LedgerTasks)> {
    let db = TestDb::new(backend).await?;
    let (ledger, tasks) = open_ledger(&db.db).await;
    let events = Events::open(ledger, Limits::default()).await.unwrap();
    let now = chrono::Utc::now();
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({
                "occurred_at": (now - chrono::Duration::minutes((n - i) as i64)).to_rfc3339(),
                "category": if i % 3 == 0 { "admin" } else { "tool" },
                "action": if i % 4 == 0 { "user.login" } else { "tool.call" },
                "outcome": if i % 5 == 0 { "denied" } else { "success" },
                "actor": {"id": if i == 1 { "=HYPERLINK(\"http://x\")".to_owned() } else { format!("svc-{}", i % 3) }, "kind": "service"},
                "resource": {"type": "tool", "id": format!("t-{i}")},
                "details": {"note": format!("row {i}, \"quoted\"\nsecond line"), "name": "Zoë"},
            })
        })
        .collect();
    for chunk in items.chunks(500) {
        events.ingest(chunk, None, &Submitter { principal: "test".into() }).await.unwrap();
    }
    Some((db, events, tasks))
}

async fn run(
    events: &Events,
    format: ExportFormat,
    filters: &[(&str, &str)],
    rows_per_sheet: u32,
) -> (Vec<u8>, custos_engine::events::model::ExportManifest) {
    let filters = pairs(filters);
    let filter = export::export_filter(&filters).unwrap();
    let spec = ExportSpec { id: uuid::Uuid::now_v7(), format, filter, filters, generated_by: "user:auditor".into() };
    let prepared = events.prepare_export(spec).await.unwrap();
    let total = prepared.total();
    let (bytes, manifest) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let progress = ExportProgress::default();
        let formats = custos_export::Formats { xlsx_rows_per_sheet: rows_per_sheet };
        let m = prepared.run(&formats, &mut out, &progress).unwrap();
        assert_eq!(progress.rows.load(std::sync::atomic::Ordering::Relaxed), m.rows, "progress reached the end");
        (out, m)
    })
    .await
    .unwrap();
    if let Some(t) = total {
        assert_eq!(t, manifest.rows, "the count taken first equals the rows written");
    }
    (bytes, manifest)
}

/// An export's file, or the error that stopped it.
async fn try_run(events: &Events, format: ExportFormat, filters: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    let filters = pairs(filters);
    let filter = export::export_filter(&filters).unwrap();
    let spec = ExportSpec { id: uuid::Uuid::now_v7(), format, filter, filters, generated_by: "user:auditor".into() };
    let prepared = events.prepare_export(spec).await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let m = prepared.run(&custos_export::Formats::default(), &mut out, &ExportProgress::default());
        m.map(|_| out).map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

/// A changed clear column or ciphertext byte stops the export at that
/// entry, whichever way the rows are read (the CSV's fast path from the
/// page's header bytes, free text and JSON through the decoded event).
async fn a_tampered_entry_stops_every_export_at_its_seq(backend: Backend) {
    const K: u64 = 17;
    let Some((db, events, _tasks)) = setup(backend, 40).await else { return };
    // Rows with every header field (the fixture has no tenant, channel or
    // application), then the same CSV both ways: the fast path's cells are
    // the decoded event's, byte for byte.
    let full: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            json!({
                "occurred_at": chrono::Utc::now().to_rfc3339(), "category": "admin", "action": "role.grant",
                "outcome": "success", "severity": "warning", "tenant": format!("tenant-{i}"),
                "actor": {"id": "alice", "kind": "user", "name": "Alice", "ip": "10.0.0.1"},
                "resource": {"type": "role", "id": "admin", "name": "Admin"},
                "source": {"application": "console", "channel": "ui"},
                "correlation": {"request_id": format!("req-{i}")}, "reason": "ticket 7",
                "details": {"name": "Zoë"},
            })
        })
        .collect();
    events.ingest(&full, None, &Submitter { principal: "test".into() }).await.unwrap();
    let fast = try_run(&events, ExportFormat::Csv, &[]).await.unwrap();
    // Every row names Zoë: free text takes the decoding path for all of them.
    let decoded = try_run(&events, ExportFormat::Csv, &[("q", "zoë")]).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&decoded));
    assert!(String::from_utf8_lossy(&fast).contains("tenant-2"));
    assert_eq!(
        fast.iter().filter(|b| **b == b'\n').count(),
        1 + 40 + 3,
        "the header and every row (details are JSON text: their line breaks are escaped)"
    );

    let ways: [(ExportFormat, &[(&str, &str)]); 3] =
        [(ExportFormat::Csv, &[]), (ExportFormat::Csv, &[("q", "row")]), (ExportFormat::Json, &[])];
    db.drop_guards().await;
    let original = events.ledger().entry(K).await.unwrap().unwrap();
    let mut flipped = original.ciphertext.clone();
    flipped[5] ^= 1;
    let at = format!("WHERE seq = {K}");
    let tampering = [
        (
            format!("UPDATE ledger_entries SET action = action || 'x' {at}"),
            format!("UPDATE ledger_entries SET action = substr(action, 1, length(action) - 1) {at}"),
        ),
        (
            format!("UPDATE ledger_entries SET tenant = 'acme' {at}"),
            format!("UPDATE ledger_entries SET tenant = NULL {at}"),
        ),
        (
            format!("UPDATE ledger_entries SET ciphertext = {} {at}", db.blob(&flipped)),
            format!("UPDATE ledger_entries SET ciphertext = {} {at}", db.blob(&original.ciphertext)),
        ),
    ];
    for (change, undo) in &tampering {
        db.sql(change).await;
        for (format, filters) in ways {
            let err = try_run(&events, format, filters).await.unwrap_err();
            assert!(err.contains(&format!("seq {K}")), "{change}, {format:?} {filters:?}: {err}");
        }
        db.sql(undo).await;
        assert_eq!(try_run(&events, ExportFormat::Csv, &[]).await.unwrap(), fast, "undone: {change}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_entry_stops_every_export_at_its_seq_on_sqlite() {
    a_tampered_entry_stops_every_export_at_its_seq(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_entry_stops_every_export_at_its_seq_on_postgres() {
    a_tampered_entry_stops_every_export_at_its_seq(Backend::Postgres).await;
}

fn all_ok(checks: &[export::Check]) -> bool {
    checks.iter().all(|c| c.ok)
}

fn tool(name: &str) -> std::process::Command {
    assert!(
        std::process::Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap().status.success(),
        "{name} is needed to check exported PDFs: apt-get install qpdf poppler-utils (make test-tools does)"
    );
    std::process::Command::new(name)
}

fn pdf_pages(path: &std::path::Path) -> u64 {
    let info = String::from_utf8(tool("pdfinfo").arg(path).output().unwrap().stdout).unwrap();
    let line = info.lines().find(|l| l.starts_with("Pages:")).unwrap_or_else(|| panic!("{info}"));
    line["Pages:".len()..].trim().parse().unwrap()
}

async fn exports_in_every_format(backend: Backend) {
    let Some((_db, events, _tasks)) = setup(backend, 25).await else { return };
    let key = events.ledger().verifier();
    let signer = events.ledger().keys().signer();

    // CSV: every row once, in seq order, formula neutralised, manifest holds.
    let (csv_bytes, m) = run(&events, ExportFormat::Csv, &[("category", "tool,admin")], 0).await;
    assert_eq!(m.rows, 25);
    let mut r = csv::Reader::from_reader(&csv_bytes[..]);
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 25);
    let seqs: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ascending");
    assert_eq!((m.first_seq, m.last_seq), (seqs.first().copied(), seqs.last().copied()));
    assert!(rows.iter().any(|r| &r[8] == "'=HYPERLINK(\"http://x\")"), "formula neutralised");
    assert!(rows.iter().any(|r| r[20].contains("\\\"quoted\\\"")), "details kept");
    let checks = export::verify_file(&mut &csv_bytes[..], &m, Some(&key)).unwrap();
    assert!(all_ok(&checks), "{checks:?}");
    assert!(
        checks.iter().any(|c| c.what == "rows" && c.ok)
            && checks.iter().any(|c| c.what == "checkpoint signature" && c.ok)
    );

    // The manifest as a signed note: opens with the key, not with another.
    let note = manifest_note(&m, signer);
    assert_eq!(read_manifest(&note, Some(&key)).unwrap(), m);
    let other = NoteSigner::new("custos.test/ledger", &[9u8; 32]).unwrap().verifier();
    assert!(read_manifest(&note, Some(&other)).is_err(), "another key does not verify it");
    let forged = note.replacen("\"rows\": 25", "\"rows\": 24", 1);
    assert!(read_manifest(&forged, Some(&key)).is_err(), "a changed manifest does not verify");

    // A changed file fails: one byte, and one row removed.
    let mut changed = csv_bytes.clone();
    let at = changed.len() / 2;
    changed[at] ^= 1;
    let checks = export::verify_file(&mut &changed[..], &m, Some(&key)).unwrap();
    assert!(checks.iter().any(|c| c.what == "sha256" && !c.ok));
    let text = String::from_utf8(csv_bytes.clone()).unwrap();
    let cut = text.rfind("\r\n").map(|end| &text[..text[..end].rfind("\r\n").unwrap() + 2]).unwrap();
    let checks = export::verify_file(&mut cut.as_bytes(), &m, Some(&key)).unwrap();
    assert!(checks.iter().any(|c| c.what == "rows" && !c.ok), "{checks:?}");

    // Newest first: the same rows, and the file still matches its manifest
    // (first/last seq are the lowest and highest, whatever the order).
    let (desc, md) = run(&events, ExportFormat::Csv, &[("category", "tool,admin"), ("order", "desc")], 0).await;
    let first_row: u64 =
        String::from_utf8(desc.clone()).unwrap().lines().nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert_eq!(Some(first_row), m.last_seq, "newest first");
    assert_eq!((md.first_seq, md.last_seq, md.rows), (m.first_seq, m.last_seq, 25));
    let checks = export::verify_file(&mut &desc[..], &md, Some(&key)).unwrap();
    assert!(all_ok(&checks), "{checks:?}");
    assert!(export::export_filter(&pairs(&[("limit", "5")])).is_err(), "no row cap");

    // Filters narrow it; the count taken first agrees (asserted in run()).
    let (_, denied) = run(&events, ExportFormat::Csv, &[("outcome", "denied")], 0).await;
    assert_eq!(denied.rows, 5);
    assert_eq!(denied.filters, pairs(&[("outcome", "denied")]));

    // JSON and NDJSON: the full events.
    let (json_bytes, mj) = run(&events, ExportFormat::Json, &[("category", "tool,admin")], 0).await;
    let arr: Vec<serde_json::Value> = serde_json::from_slice(&json_bytes).unwrap();
    assert_eq!(arr.len(), 25);
    assert_eq!(arr[0]["details"]["name"], "Zoë");
    assert!(all_ok(&export::verify_file(&mut &json_bytes[..], &mj, Some(&key)).unwrap()));
    assert_eq!(mj.entries_sha256, m.entries_sha256, "same rows, same entries digest");
    let (nd, mn) = run(&events, ExportFormat::Ndjson, &[("category", "tool,admin")], 0).await;
    let lines: Vec<serde_json::Value> =
        String::from_utf8(nd.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 25);
    assert!(all_ok(&export::verify_file(&mut &nd[..], &mn, Some(&key)).unwrap()));
    let (empty, me) = run(&events, ExportFormat::Json, &[("action", "nothing.matches")], 0).await;
    assert_eq!(serde_json::from_slice::<Vec<serde_json::Value>>(&empty).unwrap().len(), 0);
    assert_eq!((me.rows, me.first_seq), (0, None));

    // Excel: 10 rows per sheet (1 header + 9) -> 25 rows on 3 sheets.
    let (xlsx, mx) = run(&events, ExportFormat::Xlsx, &[("category", "tool,admin")], 10).await;
    assert!(all_ok(&export::verify_file(&mut &xlsx[..], &mx, Some(&key)).unwrap()));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&xlsx)).unwrap();
    let mut rows_per_sheet = Vec::new();
    for i in 1..=3 {
        let mut xml = String::new();
        zip.by_name(&format!("xl/worksheets/sheet{i}.xml")).unwrap().read_to_string(&mut xml).unwrap();
        rows_per_sheet.push(xml.matches("<row ").count());
        assert!(xml.contains("<pane ySplit=\"1\""), "frozen header on sheet {i}");
    }
    assert_eq!(rows_per_sheet, vec![10, 10, 8], "9 + 9 + 7 data rows under a header each");
    assert!(zip.by_name("xl/worksheets/sheet4.xml").is_err());
    let mut wb = String::new();
    zip.by_name("xl/workbook.xml").unwrap().read_to_string(&mut wb).unwrap();
    assert!(wb.contains("name=\"Events\"") && wb.contains("name=\"Events 3\""), "{wb}");

    // PDF: a valid file (qpdf), with the title, summary and table text
    // (pdftotext reads the embedded font's Unicode map).
    let (pdf, mp) = run(&events, ExportFormat::Pdf, &[("category", "tool,admin")], 0).await;
    assert!(all_ok(&export::verify_file(&mut &pdf[..], &mp, Some(&key)).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let check = tool("qpdf").arg("--check").arg(&path).output().unwrap();
    assert!(check.status.success(), "qpdf: {}", String::from_utf8_lossy(&check.stdout));
    assert_eq!(pdf_pages(&path), 3, "title, summary, one table page");
    let text =
        String::from_utf8(tool("pdftotext").args(["-layout"]).arg(&path).arg("-").output().unwrap().stdout).unwrap();
    for want in [
        "Audit log export",
        "user:auditor",
        "category = tool,admin",
        "Summary",
        "Events per hour",
        "Audit events",
        "Occurred (UTC)",
        "tool.call",
        "=HYPERLINK",
        &mp.entries_sha256,
    ] {
        assert!(text.contains(want), "PDF text lacks {want:?}:\n{text}");
    }
    let cp = m.checkpoint.as_ref().unwrap();
    assert!(text.contains(&cp.root), "checkpoint root in the footer");
    // Only the glyphs used are embedded: a subset (its name tagged
    // `ABCDEF+`), and the report is far smaller than the 760 KB font.
    let fonts = String::from_utf8(tool("pdffonts").arg(&path).output().unwrap().stdout).unwrap();
    let row = fonts.lines().find(|l| l.contains("DejaVuSans")).unwrap_or_else(|| panic!("no font:\n{fonts}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert!(cols[0].len() > 7 && cols[0].as_bytes()[6] == b'+', "a subset tag: {row}");
    assert_eq!(
        &cols[cols.len() - 5..cols.len() - 2],
        ["yes", "yes", "yes"],
        "embedded, subset, with a Unicode map: {row}"
    );
    assert!(pdf.len() < 150_000, "a 3-page report with a font subset is {} bytes", pdf.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_in_every_format_on_sqlite() {
    exports_in_every_format(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_in_every_format_on_postgres() {
    exports_in_every_format(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pdf_repeats_the_table_header_on_every_page() {
    let Some((_db, events, _tasks)) = setup(Backend::Sqlite, 200).await else { return };
    let (pdf, m) = run(&events, ExportFormat::Pdf, &[], 0).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.pdf");
    std::fs::write(&path, &pdf).unwrap();
    assert!(tool("qpdf").arg("--check").arg(&path).output().unwrap().status.success());
    let per = custos_export::pdf::ROWS_PER_PAGE as u64;
    let pages = 2 + m.rows.div_ceil(per);
    assert_eq!(pdf_pages(&path), pages);
    let text = String::from_utf8(tool("pdftotext").arg(&path).arg("-").output().unwrap().stdout).unwrap();
    assert_eq!(text.matches("Occurred (UTC)").count() as u64, pages - 2, "a header on every table page");
}
