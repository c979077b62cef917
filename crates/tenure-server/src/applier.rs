//! The applier thread: folds committed events into the live state, runs the alert rules
//! and records what they raise (alerts, tasks) through the writer, and hands notifications
//! to the dispatcher.

use crate::{Committed, Core, live, log, notify, rules, web};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tenure_core::event::{Event, EventBody, EventKind};
use tenure_core::time::Timestamp;
use tokio::sync::mpsc;

/// The applier thread, joined when the service stops (after the writer).
pub(crate) struct Applier(pub(crate) Option<std::thread::JoinHandle<()>>);

impl Drop for Applier {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

/// Rebuilds the live state from the log (after a panic left it half-changed).
pub(crate) type Reload =
    Box<dyn Fn(tenure_core::time::Timestamp) -> Result<live::Live, String> + Send>;

/// A test's hook, called with each batch before it is applied (a panic in it stands for a
/// bug in the folds).
pub type Fault = std::sync::Arc<dyn Fn(&[Event]) + Send + Sync>;

/// A start from a saved state (`snapshot.rs`): its history is the log of `data` up to
/// each lane's record count in `until`, the log's end at the start (the records after
/// where it was saved, its tail, folded in by the refresh that installs it).
pub(crate) struct Warm {
    pub data: std::path::PathBuf,
    pub until: Vec<(String, u64)>,
    /// Where the state was saved: its tail is the log from there to `until`.
    pub from: Vec<(String, u64)>,
    /// Whether the tail holds usage: added to the state's recent days from the log.
    pub usage: bool,
    /// The closed months' usage and the recent days, read from the columnar store before
    /// the service took events, for a state saved with another setup (its days replaced).
    pub read: Option<(tenure_health::UsageByAccount, Vec<live::DayRow>)>,
    /// The engine's settings (the columnar store's, for the closed months' usage).
    pub engine: tenure_engine::Config,
    /// A test's hook, called before the replay.
    pub gate: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

/// Saves while running: every `saver.every`, the applier asks the writer for the log's
/// marks (`ask`), and saves the state once it has taken the batches committed before them.
pub(crate) struct Saving {
    pub saver: crate::Saver,
    pub ask: mpsc::UnboundedSender<()>,
}

/// Runs the applier and restarts it when it panics: the panic is logged and counted, the
/// live state rebuilt from the log (the truth; the batch that was being applied is in it),
/// and the applier goes on with the next batch. Restarts are at least a second apart, so a
/// panic on every batch cannot spin. Ends when the writer closes the channel.
#[allow(clippy::too_many_arguments)] // the applier's setup, each given once
pub(crate) fn supervise(
    core: &Core,
    rx: &std::sync::mpsc::Receiver<Committed>,
    internal: &mpsc::UnboundedSender<Vec<Event>>,
    refresh: Duration,
    reload: Reload,
    mut watch: crate::models::Watch,
    fault: Option<Fault>,
    mut warm: Option<Warm>,
    saving: &Saving,
) {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let mut last = None::<Instant>;
    let mut first = true;
    loop {
        let warm = warm.take();
        let run = catch_unwind(AssertUnwindSafe(|| {
            apply_loop(core, rx, internal, refresh, &mut watch, fault.as_ref(), first, warm, saving)
        }));
        first = false;
        let Err(panic) = run else { return };
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        core.metrics.applier_panics.fetch_add(1, Relaxed);
        log(
            "error",
            "the applier panicked: rebuilding the live state from the log and restarting it",
            json!({"panic": why}),
        );
        if let Some(t) = last.filter(|t| t.elapsed() < Duration::from_secs(1)) {
            std::thread::sleep(Duration::from_secs(1) - t.elapsed());
        }
        last = Some(Instant::now());
        loop {
            let now = (core.clock)();
            let rebuilt = catch_unwind(AssertUnwindSafe(|| reload(now)))
                .unwrap_or_else(|_| Err("rebuilding panicked too".into()));
            let mut state = core.live.write().unwrap_or_else(|p| p.into_inner());
            let warming = state.warming();
            match rebuilt {
                Ok(mut l) => {
                    l.immediate_horizon_days = state.immediate_horizon_days;
                    *state = l;
                    // A fold of the log again, whatever an earlier failure left.
                    core.tainted.store(false, Relaxed);
                }
                Err(e) => {
                    // Not saved at the stop: it may be what the panic left.
                    core.tainted.store(true, Relaxed);
                    log(
                        "error",
                        if warming {
                            "the live state could not be rebuilt, and has no history to take events with: tried again in 10 s"
                        } else {
                            "the live state could not be rebuilt: the applier goes on with it as it was"
                        },
                        json!({"error": e}),
                    );
                }
            }
            let again = state.warming();
            drop(state);
            core.live.clear_poison();
            // A state read from its snapshot, its history not in, cannot take events (it
            // has none to fold them with): rebuilt until it can be.
            if !again {
                break;
            }
            // Meanwhile batches are let through (the rebuild reads them from the log), and a
            // stop stops it.
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
            }
        }
    }
}

/// Events applied at once from which a batch counts as a bulk import (its aggregate
/// firings capped per rule, as at start).
const BULK_EVENTS: usize = 5_000;

/// How often the applier looks whether the model or the scorecards changed.
const SETUP_CHECK: Duration = Duration::from_secs(2);

/// The applier: folds committed events into the live state and raises what the rules
/// fire; re-evaluates every account at start (`first`; after a panic, refreshes it:
/// nothing fires twice, the cooldowns come from the alerts in the log) and every
/// `refresh`. A start from a saved state (`warm`) first replays its history, keeping the
/// batches committed meanwhile, then refreshes every account and takes them.
#[allow(clippy::too_many_arguments)] // the applier's own setup
fn apply_loop(
    core: &Core,
    rx: &std::sync::mpsc::Receiver<Committed>,
    internal: &mpsc::UnboundedSender<Vec<Event>>,
    refresh: Duration,
    watch: &mut crate::models::Watch,
    fault: Option<&Fault>,
    first: bool,
    warm: Option<Warm>,
    saving: &Saving,
) {
    let mut pending = tenure_alerting::Pending::default();
    let digest_above = core.digest_above;
    let mut queued = Vec::new();
    // At start the state was just folded and scored: the rules are evaluated at that
    // instant rather than everything folded and scored again (the next refresh moves it).
    // A saved state is refreshed once its history is in (it was folded when it was saved).
    // After a panic the state may be half-changed (when it could not be rebuilt): it is
    // refreshed whole.
    let (fired, now) = if let Some(w) = warm.filter(|_| first) {
        let now = (core.clock)();
        fire_on_tail(core, &w, now, internal, &mut pending);
        let Some((history, closed, tail)) = replay_history(w, now, core, rx, &mut queued) else {
            return;
        };
        // Made ready under a read lock (the applier is the state's only writer), swapped in
        // under the write lock, and what it replaced freed after: requests wait only for
        // the swap.
        let (closed, days, tail) = match closed {
            Read::Again(closed, days) => (Some((closed, now)), Some(days), Vec::new()),
            Read::Closed(closed) => (closed.map(|c| (c, now)), None, tail),
        };
        let ready = core.live.read().expect("live state").prepare_install(history, closed, days);
        let mut live = write(core, "install");
        let replaced = live.finish_install(ready);
        live.add_days(tail);
        drop(live);
        drop(replaced);
        let now = (core.clock)();
        (refresh_in_blocks(core, now, None), now)
    } else if first {
        let mut live = write(core, "evaluate");
        (live.evaluate(), live.t)
    } else {
        let now = (core.clock)();
        (refresh_in_blocks(core, now, None), now)
    };
    // What the first evaluation finds is recorded (alerts, tasks) but not notified: on a
    // first start that is every at-risk account at once, a flood rather than news; and a
    // rule that would open more than `digest_above` tasks at once opens none (a digest), at
    // start as in every later evaluation of all accounts.
    let n = fired.len();
    let cap = Some(digest_above);
    raise(core, fired, now, None, internal, &mut pending, false, cap);
    if n > 0 {
        log(
            "info",
            "the evaluation at start raised alerts without notifying",
            json!({"alerts": n}),
        );
    }
    web::warm(core);
    // Batches committed while a saved state's history was replayed, in order, together up
    // to a million events at a time (as a backlog is taken below). No marks are among
    // them: none are asked for while warming.
    let mut queued = queued.into_iter();
    while let Some(mut c) = queued.next() {
        while c.events.len() < 1_000_000 {
            match queued.next() {
                Some(more) => merge(&mut c, more),
                None => break,
            }
        }
        take(core, c, internal, &mut pending, fault);
    }
    core.started.store(true, std::sync::atomic::Ordering::Release);
    let mut next = Instant::now() + refresh;
    // When to save next, and when the writer was asked for its marks (asked again if they
    // do not come: a writer that cannot write sends none).
    let mut save_at = saving.saver.every.map(|e| Instant::now() + e);
    let mut asked = None::<Instant>;
    loop {
        if let (Some(at), Some(every)) = (save_at, saving.saver.every) {
            let due = Instant::now() >= at && asked.is_none_or(|t| t.elapsed() >= every);
            if due && core.live.read().is_ok_and(|l| l.warming()) {
                save_at = Some(Instant::now() + every);
            } else if due {
                let _ = saving.ask.send(());
                asked = Some(Instant::now());
            }
        }
        let mut wait = next.saturating_duration_since(Instant::now()).min(SETUP_CHECK);
        if let (Some(at), None) = (save_at, asked) {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        match rx.recv_timeout(wait) {
            Ok(c) => {
                // Everything already committed is applied together: re-scoring costs per
                // account touched, not per event, so a backlog is caught up in one step.
                let (c, marks) = gather(c, rx);
                if !c.events.is_empty() {
                    take(core, c, internal, &mut pending, fault);
                }
                // Marks not asked for by this run of the loop were asked before a panic:
                // the state rebuilt since may hold more than they say.
                if let Some(m) = marks.filter(|_| asked.is_some()) {
                    saving.saver.running(m);
                    save_at = saving.saver.every.map(|e| Instant::now() + e);
                    asked = None;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < next => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let now = (core.clock)();
                // Capped too: a storm (every account's usage down after an outage, say)
                // is a digest, not hundreds of tasks.
                let fired = refresh_in_blocks(core, now, None);
                raise(core, fired, now, None, internal, &mut pending, true, Some(digest_above));
                web::warm(core);
                next = Instant::now() + refresh;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        swap_setup(core, watch, internal, &mut pending);
    }
}

/// `first` and the batches committed after it already waiting, together up to a million
/// events, up to marks the writer sent (returned apart: the state is at them once the
/// batches before are taken).
fn gather(
    mut first: Committed,
    rx: &std::sync::mpsc::Receiver<Committed>,
) -> (Committed, Option<tenure_engine::state::Marks>) {
    if let Some(m) = first.marks.take() {
        return (first, Some(m));
    }
    while first.events.len() < 1_000_000 {
        match rx.try_recv() {
            Ok(mut more) => {
                if let Some(m) = more.marks.take() {
                    return (first, Some(m));
                }
                merge(&mut first, more);
            }
            Err(_) => break,
        }
    }
    (first, None)
}

/// Appends batch `more` to `c`.
fn merge(c: &mut Committed, more: Committed) {
    c.events.extend(more.events);
    c.positions.extend(more.positions);
    c.received = c.received.min(more.received);
}

/// The live state's write lock, timed: each hold is observed in
/// `tenure_live_lock_seconds` (requests for the state wait for it), and one of half a
/// second or more is logged with what held it.
struct Held<'a> {
    guard: std::sync::RwLockWriteGuard<'a, live::Live>,
    core: &'a Core,
    what: &'static str,
    since: Instant,
}

/// Takes the live state's write lock for `what`.
fn write<'a>(core: &'a Core, what: &'static str) -> Held<'a> {
    let guard = core.live.write().expect("live state");
    Held { guard, core, what, since: Instant::now() }
}

impl std::ops::Deref for Held<'_> {
    type Target = live::Live;
    fn deref(&self) -> &live::Live {
        &self.guard
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut live::Live {
        &mut self.guard
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let held = self.since.elapsed();
        self.core.metrics.live_lock.observe(held);
        if held >= Duration::from_millis(500) {
            log(
                "info",
                "the live state was locked for half a second or more: requests for it waited",
                json!({"for": self.what, "seconds": held.as_secs_f64()}),
            );
        }
    }
}

/// Applies committed events: the immediate rules' alerts raised first, then the accounts
/// re-folded and re-scored and the aggregate rules' alerts raised.
fn take(
    core: &Core,
    c: Committed,
    internal: &mpsc::UnboundedSender<Vec<Event>>,
    pending: &mut tenure_alerting::Pending,
    fault: Option<&Fault>,
) {
    if let Some(f) = fault {
        f(&c.events);
    }
    let now = (core.clock)();
    // A bulk import is a first look at those accounts, as a start is: its aggregate
    // firings are capped per rule.
    let bulk = (c.events.len() >= BULK_EVENTS).then_some(core.digest_above);
    // Immediate rules first: their alerts do not wait for the re-scoring.
    let (fired, touched) = write(core, "take").take_at(&c.events, &c.positions, now);
    raise(core, fired, now, Some(c.received), internal, pending, true, None);
    let fired = settle_in_blocks(core, touched, now);
    raise(core, fired, now, None, internal, pending, true, bulk);
    // Keeps the portfolio's default view computed (at most every few minutes).
    web::warm(core);
}

/// Re-folds and re-scores the accounts a batch touched a block at a time, the state's lock
/// taken for each block, and lets the requests that waited in between: a bulk import may
/// touch most accounts, seconds of work at a million, which requests would otherwise wait
/// for whole (as for [`refresh_in_blocks`]).
fn settle_in_blocks(core: &Core, touched: live::Touched, now: Timestamp) -> Vec<rules::Firing> {
    // Worked out under a read lock: the applier is the state's only writer.
    let mut s = core.live.read().expect("live state").settle_start(touched, now);
    let mut fired = Vec::new();
    while let Some(f) = write(core, "settle").settle_step(&mut s) {
        fired.extend(f);
        core.live.let_readers_in(Duration::from_millis(20));
    }
    fired
}

/// The usage the warming state takes with its history: read again from the columnar store
/// before the start (a state of another setup), or the closed months read beside the
/// history (`None` when they could not be: the saved months stay).
enum Read {
    Again(tenure_health::UsageByAccount, Vec<live::DayRow>),
    Closed(Option<tenure_health::UsageByAccount>),
}

/// Records that a saved state has not taken and whose accounts it will fold later, read a
/// block at a time.
const TAIL_BLOCK: usize = 100_000;

/// The immediate rules on a saved state's tail (the records appended after it was saved:
/// an import while the service was down, events taken after the save before a crash), each
/// record against the saved state, before its history is replayed; what they fire is raised
/// and notified as a batch's is, each rule capped at `digest_above` new tasks (a digest
/// beyond). A record already alerted before a crash gets the same alert id again, which the
/// log keeps once. Records older than the immediate horizon fire nothing, as in a batch.
fn fire_on_tail(
    core: &Core,
    w: &Warm,
    now: Timestamp,
    internal: &mpsc::UnboundedSender<Vec<Event>>,
    pending: &mut tenure_alerting::Pending,
) {
    let started = Instant::now();
    let horizon = core.live.read().expect("live state").immediate_horizon(now);
    let mut kinds = live::ledger_kinds();
    kinds.push(EventKind::Usage);
    let (mut block, mut fired, mut records) = (Vec::new(), Vec::new(), 0u64);
    let mut evaluate = |block: &mut Vec<(Event, u64)>| {
        if !block.is_empty() {
            fired.extend(write(core, "tail").fire_on_tail(block, now));
            block.clear();
        }
    };
    let read = tenure_engine::replay_between(&w.data, &kinds, &w.from, &w.until, |e, i| {
        records += 1;
        if e.ts >= horizon {
            block.push((e, i));
            if block.len() == TAIL_BLOCK {
                evaluate(&mut block);
            }
        }
    });
    evaluate(&mut block);
    if let Err(e) = read {
        log(
            "error",
            "the saved state's tail could not be read: the immediate rules did not see it",
            json!({"error": e.to_string()}),
        );
    }
    if records > 0 {
        log(
            "info",
            "the immediate rules evaluated the saved state's tail",
            json!({"records": records, "fired": fired.len(),
                   "secs": started.elapsed().as_secs_f64()}),
        );
    }
    raise(core, fired, now, None, internal, pending, true, Some(core.digest_above));
}

/// Events kept at most while a saved state's history is replayed (about a gigabyte).
const WARMING_EVENTS: usize = 4_000_000;

/// The history of a saved state (`warm`), replayed from the log on a thread of its own
/// while the batches committed meanwhile are kept in `queued` (up to [`WARMING_EVENTS`]:
/// the writer then waits), with the closed months' usage before `now`'s read from the
/// columnar store beside it (`None` when it cannot be: the saved months stay) unless it
/// was read before the start, and the usage of the state's tail as day rows (taken from
/// the log between where it was saved and where the history ends: exactly what the state
/// lacks, not what the applier will take from its channel). `None` when the service stops
/// first.
fn replay_history(
    warm: Warm,
    now: tenure_core::time::Timestamp,
    core: &Core,
    rx: &std::sync::mpsc::Receiver<Committed>,
    queued: &mut Vec<Committed>,
) -> Option<(live::History, Read, Vec<live::DayRow>)> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let started = Instant::now();
    let (tx, done) = std::sync::mpsc::channel();
    let Warm { data, until, from, usage, read, engine, gate } = warm;
    // Days read again include the tail's usage already.
    let scan = usage && read.is_none();
    std::thread::spawn(move || {
        if let Some(g) = gate {
            g();
        }
        let replayed = std::thread::scope(|s| {
            let closed = s.spawn(|| match read {
                Some((closed, days)) => Read::Again(closed, days),
                None => Read::Closed(
                    live::load_monthly(&data, &engine, now)
                        .inspect_err(|e| {
                            log(
                                "error",
                                "the closed months' usage could not be read: the saved ones stay",
                                json!({"error": e}),
                            )
                        })
                        .ok(),
                ),
            });
            let mut history = live::History::default();
            let replayed =
                tenure_engine::replay_until(&data, &live::ledger_kinds(), &until, |e, i| {
                    history.push_at(e, Some(i))
                });
            // The tail's usage, as the columnar store's daily rows would give it.
            let mut rows = std::collections::HashMap::<(String, i64, String, String), u64>::new();
            let tail = if scan {
                tenure_engine::replay_between(&data, &[EventKind::Usage], &from, &until, |e, _| {
                    if let (Some(a), EventBody::Usage { user_id, event, feature, .. }) =
                        (e.account, e.body)
                    {
                        let f = feature.unwrap_or(event);
                        *rows.entry((a, e.ts.day(), user_id, f)).or_default() += 1;
                    }
                })
            } else {
                Ok(())
            };
            let closed = closed.join().unwrap_or_else(|_| {
                log(
                    "error",
                    "reading the closed months' usage panicked: the saved state's are kept",
                    json!({}),
                );
                Read::Closed(None)
            });
            let rows: Vec<live::DayRow> =
                rows.into_iter().map(|((a, d, u, f), n)| (a, d, u, f, n)).collect();
            replayed.and(tail).map(|()| (history, closed, rows)).map_err(|e| e.to_string())
        });
        let _ = tx.send(replayed);
    });
    let mut held = 0;
    let replayed = loop {
        match done.try_recv() {
            Ok(r) => break r,
            Err(TryRecvError::Disconnected) => break Err("the replay panicked".to_string()),
            Err(TryRecvError::Empty) => {}
        }
        if held >= WARMING_EVENTS {
            // Enough kept: the writer now waits on the applier's channel (and requests on
            // the writer) until the history is in, rather than memory filling. A stop
            // cannot close the channel then: it is watched here.
            if core.stopping.load(Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(c) => {
                held += c.events.len();
                queued.push(c);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    };
    match replayed {
        Ok(h) => {
            log(
                "info",
                "the saved state's history replayed: every account is refreshed from it",
                json!({"secs": started.elapsed().as_secs_f64(), "batches_waiting": queued.len()}),
            );
            Some(h)
        }
        // The supervisor rebuilds the state from the log, and the batches are in it.
        Err(e) => panic!("replaying the saved state's history: {e}"),
    }
}

/// Refreshes the live state at `now` (with a new model and scorecards, when given), a
/// block of accounts at a time, the state's lock taken for each block: requests are
/// answered between blocks rather than wait for every account. A stop ends it at the next
/// block: the accounts not reached keep their fold and health of the instant before (each
/// account's is still a fold of the log; the next refresh, or the next start's, reaches
/// them), and a stop then waits for a block, not for every account.
fn refresh_in_blocks(
    core: &Core,
    now: Timestamp,
    setup: Option<(tenure_health::scorecard::Scorecards, Option<tenure_health::Model>)>,
) -> Vec<rules::Firing> {
    // Worked out under a read lock: the applier is the state's only writer, so nothing
    // changes it before the write lock below.
    let plan = core.live.read().expect("live state").refresh_plan(now);
    let mut r = {
        let mut live = write(core, "refresh start");
        if let Some((cards, model)) = setup {
            live.cards = cards;
            live.model = model;
        }
        live.refresh_start_with(plan)
    };
    let mut fired = Vec::new();
    while let Some(f) = write(core, "refresh").refresh_step(&mut r) {
        fired.extend(f);
        if core.stopping.load(Relaxed) {
            log("info", "the refresh in progress is left for the stop", json!({}));
            break;
        }
        // The requests that waited for the block go first.
        core.live.let_readers_in(Duration::from_millis(20));
    }
    fired
}

/// Puts a changed model or scorecards in use: every account re-scored with them and the
/// aggregate rules evaluated, capped per rule as a refresh is (a new model may put many
/// accounts at risk at once). A setup that does not load leaves the one in force.
fn swap_setup(
    core: &Core,
    watch: &mut crate::models::Watch,
    internal: &mpsc::UnboundedSender<Vec<Event>>,
    pending: &mut tenure_alerting::Pending,
) {
    let Some(setup) = watch.changed() else { return };
    let now = (core.clock)();
    match setup {
        Ok((cards, model)) => {
            let info = model.as_ref().map(crate::models::ModelInfo::of);
            let fired = refresh_in_blocks(core, now, Some((cards, model)));
            *core.health_setup.lock().unwrap_or_else(|p| p.into_inner()) =
                crate::models::Status { since: Some(now), model: info.clone(), error: None };
            log(
                "info",
                "the model and scorecards were read again: every account is re-scored with them",
                json!({"model": info.map(|m| m.last_snapshot)}),
            );
            raise(core, fired, now, None, internal, pending, true, Some(core.digest_above));
            web::warm(core);
        }
        Err(e) => {
            log(
                "error",
                "the model or scorecards changed but cannot be used: the ones in force stay",
                json!({"error": e}),
            );
            core.health_setup.lock().unwrap_or_else(|p| p.into_inner()).error = Some(e);
        }
    }
}

/// Records each firing as an alert event and a task (opened, or the open one updated),
/// through the writer, and notifies.
#[allow(clippy::too_many_arguments)] // the applier's own helper: each is one of its values
fn raise(
    core: &Core,
    fired: Vec<rules::Firing>,
    now: Timestamp,
    received: Option<Instant>,
    internal: &mpsc::UnboundedSender<Vec<Event>>,
    pending: &mut tenure_alerting::Pending,
    notify: bool,
    cap: Option<usize>,
) {
    if fired.is_empty() {
        return;
    }
    let live = core.live.read().expect("live state");
    let raised = tenure_alerting::raise(&live, fired, now, pending, cap);
    let digested = raised.iter().filter(|r| r.task.is_none()).count();
    if digested > 0 {
        log(
            "info",
            "alerts recorded in a digest instead of a task each",
            json!({"alerts": digested, "cap": cap}),
        );
    }
    let mut events = Vec::with_capacity(2 * raised.len());
    for r in raised {
        let rule = &live.rules.rules[r.rule];
        if r.opened {
            core.metrics.tasks_opened.fetch_add(1, Relaxed);
        }
        if let Some(at) = received {
            core.metrics.alert_latency.observe(at.elapsed());
        }
        *core
            .metrics
            .alerts
            .lock()
            .expect("metrics lock")
            .entry((rule.id.clone(), rule.severity.as_str().to_string()))
            .or_default() += 1;
        log(
            "info",
            "alert",
            json!({"alert_id": r.alert_id, "account_id": r.account_id, "rule": rule.id,
                   "severity": rule.severity.as_str(), "task_id": r.task_id}),
        );
        // A digest's alerts are not notified one by one either.
        let notify = notify && r.task.is_some();
        if let Some(d) =
            core.dispatcher.lock().expect("dispatcher lock").as_ref().filter(|_| notify)
        {
            d.send(notify::Notification {
                alert_id: r.alert_id,
                account_id: r.account_id.clone(),
                account_name: r.account_name,
                rule: rule.id.clone(),
                severity: rule.severity.as_str().to_string(),
                message: r.message,
                owner: r.owner,
                task_id: r.task_id,
                ts: now.to_string(),
                link: core
                    .public_url
                    .as_ref()
                    .map(|u| format!("{}/accounts/{}", u.trim_end_matches('/'), r.account_id)),
            });
        }
        events.push(r.alert);
        events.extend(r.task);
    }
    drop(live);
    let _ = internal.send(events);
}
