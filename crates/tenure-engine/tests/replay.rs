//! The log is the truth: the ledger folded from the log equals the ledger folded straight
//! from the input, whatever the import order, and importing twice changes nothing.

use std::path::{Path, PathBuf};
use tenure_core::event::EventKind;
use tenure_core::time::{Period, PeriodUnit, Timestamp};
use tenure_engine::import::Format;
use tenure_engine::{CS_KINDS, Config, Importer, REVENUE_KINDS};
use tenure_ledger::{AccountLedger, LedgerBuilder};

fn company(dir: &Path) -> Vec<PathBuf> {
    let cfg = tenure_sim::SimConfig {
        accounts: 150,
        months: 18,
        seed: 11,
        start: (2023, 1),
        usage_events: Some(20_000),
        format: tenure_sim::OutputFormat::Jsonl,
    };
    let s = tenure_sim::generate(&cfg, dir, &|_| {}).unwrap();
    s.files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "jsonl")).collect()
}

/// The generated company imported into `DIR/data` with the default settings: its files
/// and the data directory.
fn imported_company(dir: &Path) -> (Vec<PathBuf>, PathBuf) {
    let files = company(&dir.join("company"));
    let data = dir.join("data");
    import_all(&data, &files, &Config::defaults());
    (files, data)
}

fn import_all(data: &Path, files: &[PathBuf], cfg: &Config) -> u64 {
    let (mut imp, _) = Importer::open(data, cfg.ingest(None)).unwrap();
    let mut stored = 0;
    for f in files {
        let s = imp
            .import(
                std::fs::File::open(f).unwrap(),
                Format::Jsonl,
                None,
                &mut |r| panic!("{}: {r}", f.display()),
                &mut |_| {},
            )
            .unwrap();
        stored += s.progress.accepted;
    }
    stored
}

fn render(l: &tenure_ledger::Ledger) -> String {
    format!("{:#?}\n{:#?}", l.accounts, l.costs)
}

#[test]
fn replay_reproduces_the_ledger_exactly() {
    let t = tempfile::tempdir().unwrap();
    let files = company(&t.path().join("company"));
    let cfg = Config::defaults();
    let as_of = Timestamp::parse("2025-01-01").unwrap();

    // Straight from the files, no log.
    let mut direct = LedgerBuilder::new();
    let ingest = cfg.ingest(None);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let (ok, bad) = tenure_ingest::parse_jsonl_block(&text, 1, None, &ingest);
        assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(3)]);
        for (_, e) in ok {
            if REVENUE_KINDS.contains(&e.kind()) || CS_KINDS.contains(&e.kind()) {
                direct.push(e);
            }
        }
    }
    let direct = direct.finish(&cfg.revenue, as_of);
    assert!(direct.accounts.len() >= 150);
    assert!(direct.accounts.iter().filter(|a| !a.movements.is_empty()).count() > 100);

    // Through the log, in file order; then in reverse order into another directory.
    let a = t.path().join("a");
    let stored = import_all(&a, &files, &cfg);
    let b = t.path().join("b");
    let reversed: Vec<PathBuf> = files.iter().rev().cloned().collect();
    assert_eq!(import_all(&b, &reversed, &cfg), stored);
    let from_a = tenure_engine::ledger(&a, &cfg, as_of).unwrap();
    let from_b = tenure_engine::ledger(&b, &cfg, as_of).unwrap();
    // (Not assert_eq: a failure would print two whole ledgers.)
    assert!(
        render(&from_a) == render(&direct),
        "the ledger from the log differs from the direct fold"
    );
    assert!(render(&from_b) == render(&direct), "import order changed the ledger");
    assert!(direct.accounts.iter().any(|a| !a.cs.tickets.is_empty() && !a.cs.responses.is_empty()));

    // Importing everything again stores nothing and changes nothing.
    assert_eq!(import_all(&a, &files, &cfg), 0);
    assert!(render(&tenure_engine::ledger(&a, &cfg, as_of).unwrap()) == render(&direct));

    // And the reports agree, month by month.
    let periods = Period::parse("2023-01..2024-07").unwrap().split(PeriodUnit::Month);
    let k1 = tenure_kpi::report(&from_b, &periods, None, &cfg.kpi);
    let k2 = tenure_kpi::report(&direct, &periods, None, &cfg.kpi);
    assert_eq!(k1, k2);

    // Every event type of the contract made it into its lane (but alerts and tasks: the
    // service raises those, a company's history does not hold them).
    let stats = tenure_engine::log_stats(&a).unwrap();
    for kind in EventKind::ALL.iter().filter(|k| {
        // Written by the service or by people, not by the generator.
        !matches!(k, EventKind::Alert | EventKind::Task | EventKind::ForecastOverride)
    }) {
        assert!(
            stats.iter().any(|(lane, n)| lane == kind.as_str() && *n > 0),
            "no {} events",
            kind.as_str()
        );
    }
}

#[test]
fn explain_sources_resolve_back_to_their_events() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let input = t.path().join("subs.jsonl");
    // Two events with a message id, two without (those are named by their log position):
    // a starts (two lines at once), grows, then b starts.
    std::fs::write(
        &input,
        r#"{"type":"account","timestamp":"2026-01-01","account_id":"a","attributes":{"segment":"smb"}}
{"type":"subscription","timestamp":"2026-01-05","account_id":"a","message_id":"m-a1","subscription_id":"s1","amount":"100","status":"active"}
{"type":"subscription","timestamp":"2026-01-05","account_id":"a","subscription_id":"s2","product":"addon","amount":"20","status":"active"}
{"type":"subscription","timestamp":"2026-02-10","account_id":"a","message_id":"m-a2","subscription_id":"s1","amount":"150","status":"active"}
{"type":"subscription","timestamp":"2026-02-11","account_id":"b","subscription_id":"s9","amount":"7","status":"active"}
"#,
    )
    .unwrap();
    let cfg = Config::defaults();
    assert_eq!(import_all(&data, &[input], &cfg), 5);
    let as_of = Timestamp::parse("2026-06-01").unwrap();
    let l =
        tenure_engine::ledger_sourced(&data, &cfg, as_of, tenure_engine::Scope::REVENUE).unwrap();
    use tenure_ledger::SourceRef::{Log, Message};
    let got: Vec<(String, Vec<tenure_ledger::SourceRef>)> = l
        .accounts
        .iter()
        .flat_map(|a| a.movements.iter().map(|m| (a.id.clone(), m.sources.to_vec())))
        .collect();
    // The subscription lane holds the four subscription events, numbered from 0.
    assert_eq!(
        got,
        vec![
            ("a".to_string(), vec![Message("m-a1".into()), Log(1)]),
            ("a".to_string(), vec![Message("m-a2".into())]),
            ("b".to_string(), vec![Log(3)]),
        ]
    );
    // Without asking, no sources; the same movements otherwise.
    let plain = tenure_engine::ledger(&data, &cfg, as_of).unwrap();
    assert!(plain.accounts.iter().all(|a| a.movements.iter().all(|m| m.sources.is_empty())));

    let refs: Vec<tenure_ledger::SourceRef> = got.into_iter().flat_map(|(_, r)| r).collect();
    let mut found = tenure_engine::source_events(&data, &refs).unwrap();
    found.sort_by_key(|s| s.position);
    let summary: Vec<String> = found
        .iter()
        .map(|s| {
            let tenure_core::event::EventBody::Subscription(sub) = &s.event.body else {
                panic!("not a subscription: {:?}", s.event)
            };
            format!(
                "{} {} {} {} {}",
                s.position,
                s.source,
                s.event.account.as_deref().unwrap_or("-"),
                sub.subscription_id,
                sub.amount.minor
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "0 m-a1 a s1 10000",
            "1 log:subscription:1 a s2 2000",
            "2 m-a2 a s1 15000",
            "3 log:subscription:3 b s9 700"
        ]
    );
    // A reference the log does not hold is left out, not an error.
    let missing = [Message("nope".into()), Log(99)];
    assert!(tenure_engine::source_events(&data, &missing).unwrap().is_empty());
}

fn import_text(data: &Path, cfg: &Config, text: &str) {
    let (mut imp, _) = Importer::open(data, cfg.ingest(None)).unwrap();
    imp.import(text.as_bytes(), Format::Jsonl, None, &mut |r| panic!("{r}"), &mut |_| {}).unwrap();
}

/// Every account of the whole fold, folded alone through the account index: the same
/// account (every field), and the same costs. Returns how the index answered, per call.
fn check_index(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
) -> Vec<tenure_engine::accounts::Refresh> {
    let full = tenure_engine::ledger(data, cfg, as_of).unwrap();
    let mut refreshes = Vec::new();
    for a in &full.accounts {
        let (one, refresh) =
            tenure_engine::accounts::account_ledger(data, cfg, as_of, &a.id).unwrap();
        let one = one.unwrap_or_else(|| panic!("{} not found through the index", a.id));
        assert_eq!(one.accounts.len(), 1);
        assert_eq!(format!("{:#?}", one.accounts[0]), format!("{a:#?}"), "account {}", a.id);
        assert_eq!(format!("{:?}", one.costs), format!("{:?}", full.costs));
        refreshes.push(refresh);
    }
    let (none, _) =
        tenure_engine::accounts::account_ledger(data, cfg, as_of, "acc-nobody").unwrap();
    assert!(none.is_none());
    // Many at once, as a checkpoint brought forward folds them.
    let reader = tenure_log::LogReader::open(&tenure_engine::log_dir(data)).unwrap();
    let (index, _) = tenure_engine::accounts::AccountIndex::current(data, &reader).unwrap();
    let mut ids: Vec<&str> = full.accounts.iter().map(|a| a.id.as_str()).rev().collect();
    ids.insert(3, "acc-nobody");
    let many = tenure_engine::accounts::fold_many(&index, &reader, cfg, as_of, &ids).unwrap();
    let many: Vec<_> = many.into_iter().map(|(a, _)| a).collect();
    let want: Vec<&tenure_ledger::AccountLedger> = full.accounts.iter().rev().collect();
    assert_eq!(format!("{many:#?}"), format!("{want:#?}"));
    refreshes
}

#[test]
fn one_account_through_the_account_index_equals_the_whole_fold() {
    use tenure_engine::accounts::Refresh;
    let t = tempfile::tempdir().unwrap();
    let (files, data) = imported_company(t.path());
    let cfg = Config::defaults();
    let as_of = Timestamp::parse("2024-03-01").unwrap();
    let r = check_index(&data, &cfg, as_of);
    assert_eq!(r[0], Refresh::Built("first use"));
    assert!(r[1..].iter().all(|r| *r == Refresh::Current), "{r:?}");
    assert_eq!(
        check_index(&data, &cfg, Timestamp::parse("2025-01-01").unwrap())[0],
        Refresh::Current
    );

    let before: Vec<(String, u64)> = {
        let reader = tenure_log::LogReader::open(&tenure_engine::log_dir(&data)).unwrap();
        reader.lanes().into_iter().map(|l| (l.clone(), reader.lane_len(&l))).collect()
    };
    // New events: the champion of acc-000001 turns up under acc-000002 (a move the index
    // must find across accounts), and once more under acc-000001 before either, dated
    // earlier than events already stored; a new account; a ticket.
    import_text(
        &data,
        &cfg,
        concat!(
            r#"{"type":"contact","timestamp":"2024-02-01T00:00:00Z","account_id":"acc-000002","contact_id":"c-000001-1","role":"champion","status":"active"}"#,
            "\n",
            r#"{"type":"contact","timestamp":"2022-12-01T00:00:00Z","account_id":"acc-000003","contact_id":"c-000001-1","status":"active"}"#,
            "\n",
            r#"{"type":"subscription","timestamp":"2024-01-10T00:00:00Z","account_id":"acc-new","subscription_id":"s-new","kind":"product","quantity":1,"amount":"50.00","currency":"USD","interval":"month","status":"active"}"#,
            "\n",
            r#"{"type":"ticket","timestamp":"2024-02-02T00:00:00Z","account_id":"acc-000003","ticket_id":"t-new","status":"opened","category":"defect","severity":"high"}"#,
            "\n",
            r#"{"type":"cost","timestamp":"2024-02-01T00:00:00Z","account_id":"acc-costonly","category":"retention","amount":"120.00","currency":"USD","period_start":"2024-02-01T00:00:00Z","period_end":"2024-03-01T00:00:00Z"}"#,
            "\n",
        ),
    );
    let full = tenure_engine::ledger(&data, &cfg, as_of).unwrap();
    let moved = |id: &str| {
        full.accounts
            .iter()
            .find(|a| a.id == id)
            .unwrap()
            .cs
            .departures
            .iter()
            .any(|d| d.contact_id == "c-000001-1" && d.moved_to.is_some())
    };
    assert!(moved("acc-000001") && moved("acc-000003"), "the new contact events are moves");
    let r = check_index(&data, &cfg, as_of);
    assert_eq!(r[0], Refresh::Extended);
    // What the new records change: the accounts they name, and every account that sighted
    // the contact they sight.
    let reader = tenure_log::LogReader::open(&tenure_engine::log_dir(&data)).unwrap();
    let (index, _) = tenure_engine::accounts::AccountIndex::current(&data, &reader).unwrap();
    let from: Vec<(&str, u64)> = before.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    let touched = tenure_engine::accounts::touched(&index, &reader, &from).unwrap();
    assert_eq!(touched, ["acc-000001", "acc-000002", "acc-000003", "acc-costonly", "acc-new"]);
    assert!(full.accounts.iter().any(|a| a.id == "acc-costonly"), "a cost naming an account");
    assert!(r[1..].iter().all(|r| *r == Refresh::Current), "{r:?}");

    // More: the tail is extended again (its postings kept, the new ones added).
    import_text(
        &data,
        &cfg,
        concat!(
            r#"{"type":"contact","timestamp":"2024-02-20T00:00:00Z","account_id":"acc-new","contact_id":"c-000001-1","status":"active"}"#,
            "\n",
        ),
    );
    assert_eq!(check_index(&data, &cfg, as_of)[0], Refresh::Extended);

    // A damaged base is not trusted: indexed again.
    let base = data.join("state/accounts.idx");
    let mut bytes = std::fs::read(&base).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&base, &bytes).unwrap();
    assert_eq!(check_index(&data, &cfg, as_of)[0], Refresh::Built("damaged: block checksum"));

    // A file cut short (a crash before its rename was synced) is damage: indexed again.
    std::fs::write(&base, b"TNRAIX").unwrap();
    assert_eq!(check_index(&data, &cfg, as_of)[0], Refresh::Built("damaged: shorter than it says"));

    // An index of another log (the same company, then another contact event) does not
    // fit: its last contact record is not this log's.
    let other = t.path().join("other");
    import_all(&other, &files, &cfg);
    import_text(
        &other,
        &cfg,
        concat!(
            r#"{"type":"contact","timestamp":"2024-02-21T00:00:00Z","account_id":"acc-other","contact_id":"c-other","status":"active"}"#,
            "\n",
        ),
    );
    tenure_engine::accounts::account_ledger(&other, &cfg, as_of, "acc-000001").unwrap();
    std::fs::copy(other.join("state/accounts.idx"), &base).unwrap();
    std::fs::remove_file(data.join("state/accounts.tail")).ok();
    assert_eq!(check_index(&data, &cfg, as_of)[0], Refresh::Built("the log changed"));
}

/// The ledger checkpoint (`tenure_ledger::checkpoint`) gives back every account as folded,
/// and a fold holds until the account's `changes_at`: a fold at any later instant before
/// it gives the same account, under every rule that derives changes from the events
/// (cancellations at the event, at the term end or when scheduled; unpaid lines churning).
#[test]
fn the_ledger_checkpoint_holds_each_account_until_it_changes() {
    use tenure_ledger::ChurnRecognition;
    use tenure_ledger::checkpoint::{self, CheckpointError, LedgerCheckpoint, encode};
    let t = tempfile::tempdir().unwrap();
    let (files, data) = imported_company(t.path());
    let builder = tenure_engine::ledger_builder(&data, tenure_engine::Scope::ALL).unwrap();
    let hour = 3_600_000_000;
    let (mut held, mut changed) = (0, 0);
    // Instants inside and after the history, and an hour after lines went unpaid, were
    // cancelled or had a cancellation scheduled: a change derived from them is ahead.
    let mut instants: Vec<Timestamp> =
        ["2023-09-14T12:00:00Z", "2024-05-31T23:00:00Z", "2024-07-15T00:00:00Z"]
            .iter()
            .map(|t| Timestamp::parse(t).unwrap())
            .collect();
    let subs = files.iter().find(|f| f.ends_with("subscriptions.jsonl")).unwrap();
    let subs = std::fs::read_to_string(subs).unwrap();
    for marker in ["\"past_due\"", "\"canceled\"", "\"cancel_at\""] {
        for line in subs.lines().filter(|l| l.contains(marker)).step_by(7).take(3) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ts = Timestamp::parse(v["timestamp"].as_str().unwrap()).unwrap();
            instants.push(Timestamp(ts.0 + hour));
        }
    }
    assert!(instants.len() >= 10, "{instants:?}");
    for (recognition, past_due) in [
        (ChurnRecognition::AtEvent, None),
        (ChurnRecognition::TermEnd, Some(10)),
        (ChurnRecognition::Scheduled, Some(3)),
    ] {
        let mut cfg = Config::defaults();
        cfg.revenue.churn_recognition = recognition;
        cfg.revenue.past_due_churn_days = past_due;
        for as_of in &instants {
            let as_of = *as_of;
            let ledger = builder.clone().finish(&cfg.revenue, as_of);
            // Whole through the checkpoint's bytes.
            let bytes =
                encode(b"key", b"marks", as_of, &ledger.accounts, &ledger.diagnostics).to_bytes();
            let c = LedgerCheckpoint::open(bytes.clone(), b"key").unwrap();
            assert_eq!(
                (c.len(), c.as_of(), c.position()),
                (ledger.accounts.len(), as_of, &b"marks"[..])
            );
            assert_eq!(c.diagnostics(), &ledger.diagnostics[..]);
            let back: Vec<_> = c
                .map_chunks(&[], tenure_ledger::checkpoint::Want::ALL, |a| a.to_vec())
                .unwrap()
                .concat();
            let kept: Vec<_> = ledger.accounts.iter().map(checkpoint::kept).collect();
            assert_eq!(format!("{back:#?}"), format!("{kept:#?}"));
            // Decoded one after another into the same account (its vectors reused): each
            // whole, with nothing of the account before.
            let folded: Vec<_> = c
                .fold_chunks(
                    &[],
                    tenure_ledger::checkpoint::Want::ALL,
                    Vec::new,
                    |v: &mut Vec<AccountLedger>, a| v.push(a.clone()),
                )
                .unwrap()
                .concat();
            assert_eq!(format!("{folded:#?}"), format!("{kept:#?}"));
            // A full checkpoint gives back every account whole.
            let full = tenure_ledger::checkpoint::encode_full(
                b"key",
                b"marks",
                as_of,
                &ledger.accounts,
                &ledger.diagnostics,
            );
            let c = LedgerCheckpoint::open(full.to_bytes(), b"key").unwrap();
            let whole: Vec<_> = c
                .map_chunks(&[], tenure_ledger::checkpoint::Want::FULL, |a| a.to_vec())
                .unwrap()
                .concat();
            assert_eq!(format!("{whole:#?}"), format!("{:#?}", ledger.accounts));
            // What is dropped, the KPIs do not read: every report is the same.
            let periods = Period::parse("2023-01..2024-08").unwrap().split(PeriodUnit::Quarter);
            use tenure_kpi::Family;
            for (by, family) in [
                (None, Family::All),
                (Some("segment"), Family::All),
                (Some("plan"), Family::All),
                (None, Family::Revenue),
                (Some("segment"), Family::Revenue),
            ] {
                let by = by.map(tenure_kpi::By::parse);
                let kpi = &cfg.kpi;
                let tally = || {
                    tenure_kpi::Tally::new(
                        family,
                        &periods,
                        by.as_ref(),
                        kpi,
                        None,
                        Some(&cfg.revenue.fx),
                    )
                };
                let full = match family {
                    Family::Revenue => tenure_kpi::revenue(&ledger, &periods, by.as_ref(), kpi),
                    _ => tenure_kpi::report(&ledger, &periods, by.as_ref(), kpi),
                };
                // A chunk's accounts at once, and one at a time as they are decoded.
                let mut t = tally();
                for p in c.map_chunks(&[], t.wants(), |a| t.part(a)).unwrap() {
                    t.add(p);
                }
                assert_eq!(format!("{:?}", t.rows(&ledger.costs)), format!("{full:?}"));
                let mut t = tally();
                let groups = c.fold_chunks(&[], t.wants(), || t.start(), |g, a| t.step(g, a));
                for g in groups.unwrap() {
                    t.add(g.part());
                }
                assert_eq!(format!("{:?}", t.rows(&ledger.costs)), format!("{full:?}"));
            }
            assert!(matches!(LedgerCheckpoint::open(bytes, b"other"), Err(CheckpointError::Key)));
            // Held until it changes.
            for later in [1, 24, 24 * 10, 24 * 45] {
                let at = Timestamp(as_of.0 + later * hour);
                let then = builder.clone().finish(&cfg.revenue, at);
                let expired = c.changing_by(at).unwrap();
                for a in &ledger.accounts {
                    assert!(a.changes_at.is_none_or(|c| c > as_of), "{}", a.id);
                    if a.changes_at.is_some_and(|c| c <= at) {
                        assert!(expired.contains(&a.id));
                        changed += 1;
                        continue;
                    }
                    assert!(!expired.contains(&a.id));
                    let b = then.account(&a.id).unwrap();
                    assert_eq!(
                        format!("{b:#?}"),
                        format!("{a:#?}"),
                        "{recognition:?} {as_of} -> {at}"
                    );
                    held += 1;
                }
            }
        }
    }
    assert!(held > 1000 && changed > 1000, "held {held}, changed {changed}");
}

/// `replay_at` gives each lane whole, in the order of the kinds asked for, each in log
/// order with its record index: the usage lane here (20,000 events) spans more than one of
/// the batches its decoding thread hands over.
#[test]
fn replay_gives_each_lane_in_log_order_across_batches() {
    let t = tempfile::tempdir().unwrap();
    let (files, data) = imported_company(t.path());
    let cfg = Config::defaults();
    // What each lane holds, in import order: the files' events of its kind.
    let ingest = cfg.ingest(None);
    let mut expected: Vec<Vec<tenure_core::event::Event>> = vec![Vec::new(), Vec::new()];
    let kinds = [EventKind::Usage, EventKind::Account];
    for f in &files {
        let (ok, bad) = tenure_ingest::parse_jsonl_block(
            &std::fs::read_to_string(f).unwrap(),
            1,
            None,
            &ingest,
        );
        assert!(bad.is_empty());
        for (_, e) in ok {
            if let Some(k) = kinds.iter().position(|k| *k == e.kind()) {
                expected[k].push(e);
            }
        }
    }
    assert!(expected[0].len() > 16_384 && !expected[1].is_empty(), "{}", expected[0].len());
    let mut got: Vec<Vec<(u64, tenure_core::event::Event)>> = vec![Vec::new(), Vec::new()];
    let mut lane = 0;
    tenure_engine::replay_at(&data, &kinds, |e, i| {
        if e.kind() != kinds[lane] {
            lane += 1;
        }
        got[lane].push((i, e));
    })
    .unwrap();
    for (k, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got.len(), expected.len(), "{:?}", kinds[k]);
        for (n, ((i, e), x)) in got.iter().zip(expected).enumerate() {
            assert_eq!((*i, e), (n as u64, x), "{:?} record {n}", kinds[k]);
        }
    }
    // Bounded: each lane's first records, as counted (across a batch's end for usage); a
    // lane not named gives none.
    let until = [("usage".to_string(), 20_000), ("account".to_string(), 3)];
    let mut bounded: Vec<(u64, tenure_core::event::Event)> = Vec::new();
    tenure_engine::replay_until(&data, &kinds, &until, |e, i| bounded.push((i, e))).unwrap();
    let want: Vec<_> = expected[0]
        .iter()
        .take(20_000)
        .enumerate()
        .chain(expected[1].iter().take(3).enumerate())
        .map(|(i, e)| (i as u64, e.clone()))
        .collect();
    assert!(bounded == want, "{} events bounded, {} wanted", bounded.len(), want.len());
    let mut none = 0;
    tenure_engine::replay_until(&data, &kinds, &until[1..], |e, _| {
        assert_eq!(e.kind(), EventKind::Account);
        none += 1;
    })
    .unwrap();
    assert_eq!(none, 3);
}

/// The ledger state brought forward over new events keeps the accounts folded again in a
/// delta beside the checkpoint (the checkpoint's bytes untouched), grows the delta over
/// later events, merges it into the checkpoint once it holds more than it may, and passes
/// over a damaged delta or one of another checkpoint: every account read from it equals
/// the account of a fold of the whole log at every step.
#[test]
fn the_ledger_state_keeps_refolded_accounts_in_a_delta() {
    use tenure_engine::ledger_state::{self, DELTA, FILE, LedgerState};
    use tenure_ledger::checkpoint::{Want, kept};
    let t = tempfile::tempdir().unwrap();
    let (_, data) = imported_company(t.path());
    let cfg = Config::defaults();
    let now = Timestamp::parse("2026-12-07").unwrap();
    let as_of = Timestamp::parse("2024-07-01").unwrap();
    let state = data.join("state");
    let read = |p: &str| std::fs::read(state.join(p)).ok();
    let accounts = |st: &LedgerState| -> Vec<AccountLedger> {
        let mut v: Vec<AccountLedger> = st
            .fold_chunks(Want::ALL, Vec::new, |v: &mut Vec<AccountLedger>, a| v.push(kept(a)))
            .unwrap()
            .concat();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    let check = |st: &LedgerState, at: Timestamp| {
        let whole = tenure_engine::ledger(&data, &cfg, at).unwrap();
        let want: Vec<AccountLedger> = whole.accounts.iter().map(kept).collect();
        assert_eq!(format!("{:#?}", accounts(st)), format!("{want:#?}"), "at {at}");
    };
    let open = |at: Timestamp, most: Option<usize>| -> LedgerState {
        let st = ledger_state::open_with(&data, &cfg, at, now, b"key", most).unwrap();
        check(&st, at);
        st
    };
    let said = |st: &LedgerState| st.said.clone().unwrap_or_default();
    let st = open(as_of, Some(100));
    assert!(said(&st).contains("folding the log into"), "{}", said(&st));
    let base = read(FILE).unwrap();
    let ids: Vec<String> = accounts(&st).iter().map(|a| a.id.clone()).collect();
    let ticket = |i: usize, n: usize| {
        format!(
            "{{\"type\":\"ticket\",\"timestamp\":\"2024-06-20T10:00:00Z\",\"account_id\":\"{}\",\"ticket_id\":\"t-delta-{n}\",\"status\":\"opened\",\"category\":\"defect\",\"severity\":\"urgent\"}}\n",
            ids[i]
        )
    };
    // A ticket for three accounts and a new account with its contract.
    let text = [ticket(3, 0), ticket(40, 1), ticket(77, 2)].concat()
        + "{\"type\":\"subscription\",\"timestamp\":\"2024-06-01T10:00:00Z\",\"account_id\":\"acc-delta-new\",\"subscription_id\":\"s-delta\",\"kind\":\"product\",\"plan\":\"pro\",\"quantity\":3,\"amount\":\"90.00\",\"currency\":\"USD\",\"interval\":\"month\",\"status\":\"active\"}\n";
    import_text(&data, &cfg, &text);
    let st = open(as_of, Some(100));
    assert!(said(&st).contains("4 accounts saved beside"), "{}", said(&st));
    assert_eq!(read(FILE).unwrap(), base, "the checkpoint is not rewritten");
    let first = read(DELTA).expect("a delta");
    // Read as it is while nothing changes.
    let st = open(as_of, Some(100));
    assert!(st.said.is_none(), "{}", said(&st));
    // Later events: the delta holds both days' accounts.
    import_text(&data, &cfg, &[ticket(3, 3), ticket(120, 4)].concat());
    let st = open(as_of, Some(100));
    assert!(said(&st).contains("2 accounts folded again (2 named"), "{}", said(&st));
    assert!(said(&st).contains("5 accounts saved beside"), "{}", said(&st));
    assert_eq!(read(FILE).unwrap(), base);
    // At later instants: the accounts whose fold changes by then, the delta's included,
    // folded again.
    for at in ["2024-08-15T00:00:00Z", "2025-03-01T00:00:00Z"] {
        open(Timestamp::parse(at).unwrap(), Some(100));
    }
    // A damaged delta is passed over, said, and replaced at the next save.
    let good = read(DELTA).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    std::fs::write(state.join(DELTA), &bad).unwrap();
    import_text(&data, &cfg, &ticket(5, 5));
    let st = open(as_of, Some(100));
    assert!(said(&st).contains(&format!("{DELTA}: checkpoint damaged")), "{}", said(&st));
    assert!(said(&st).contains("6 accounts folded again (6 named"), "{}", said(&st));
    assert_ne!(read(DELTA).unwrap(), bad);
    // Past what a delta may hold, it is merged into the checkpoint and removed.
    import_text(&data, &cfg, &ticket(9, 6));
    let st = open(as_of, Some(3));
    assert!(said(&st).contains("brought forward"), "{}", said(&st));
    assert!(read(DELTA).is_none());
    assert_ne!(read(FILE).unwrap(), base);
    // The delta of the checkpoint replaced is passed over without a word.
    std::fs::write(state.join(DELTA), &first).unwrap();
    let st = open(as_of, Some(100));
    assert!(st.said.is_none(), "{}", said(&st));
    open(Timestamp::parse("2024-09-01T00:00:00Z").unwrap(), Some(100));
}
