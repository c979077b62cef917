//! The single writer of the data directory's log, on its own thread: requests' events
//! are committed together (group commit) and answered once durable; committed events go on
//! to the applier.

use crate::{ApiError, AppState};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenure_core::event::{Event, EventKind};
use tenure_engine::Importer;
use tokio::sync::{mpsc, oneshot};

pub(crate) type Reply = oneshot::Sender<Result<Vec<bool>, String>>;

/// Events to store: a request's (answered once durable) or the service's own (alerts and
/// tasks, answered by nobody).
pub(crate) struct Job {
    pub(crate) events: Vec<Event>,
    pub(crate) reply: Option<Reply>,
    pub(crate) received: Instant,
}

/// Stored events on their way to the applier.
pub struct Committed {
    pub events: Vec<Event>,
    /// Each event's record index in its lane (the source of a subscription event).
    pub positions: Vec<u64>,
    /// When the earliest request among them was received.
    pub received: Instant,
    /// Instead of events (none then): where every lane of the log stood when the applier
    /// asked (`Writer::marks`), after the batches sent before it. The applier's state,
    /// once it has taken those, is the log's fold up to these marks: what a save while
    /// running notes.
    pub marks: Option<tenure_engine::state::Marks>,
}

/// Whether the log can be written: false from a failed commit (a full disk, say) until a
/// probe shows the disk takes writes again and the log is reopened. `/healthz` and the
/// `tenure_ready` gauge tell it; requests meanwhile are answered 503 `storage_unavailable`.
#[derive(Debug)]
pub struct Storage {
    writable: AtomicBool,
    /// Commits that failed.
    pub failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            writable: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

impl Storage {
    pub fn is_writable(&self) -> bool {
        self.writable.load(Relaxed)
    }

    /// Why the log cannot be written, while it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.is_writable() {
            return None;
        }
        Some(self.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default())
    }

    fn failed(&self, why: String) {
        self.failures.fetch_add(1, Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(why);
        }
        self.writable.store(false, Relaxed);
    }

    fn recovered(&self) {
        self.writable.store(true, Relaxed);
    }
}

/// Opens the log again (its recovery drops what a failed commit left half-written).
pub type Reopen = Box<dyn FnMut() -> Result<Importer, String> + Send>;

/// How often a writer that cannot write checks whether it can again.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The single writer of the data directory's log, on its own thread.
pub struct Writer {
    pub(crate) tx: mpsc::Sender<Job>,
    /// For the applier (taken at start): the writer ends once every clone is gone.
    pub(crate) internal: Option<mpsc::UnboundedSender<Vec<Event>>>,
    /// For the applier (taken at start): asks for the log's marks between two commits,
    /// sent to it after the batches committed before ([`Committed::marks`]).
    pub(crate) marks: Option<mpsc::UnboundedSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The writer's own state: the log when it is open, and the service's events (alerts,
/// tasks) whose commit failed, kept to go first once the log is back.
struct Log {
    importer: Option<Importer>,
    reopen: Reopen,
    probe: PathBuf,
    storage: Arc<Storage>,
    held: Vec<Vec<Event>>,
}

impl Log {
    /// When the log is closed after a failure: a probe write (the size of a small commit,
    /// synced) and, if the disk took it, the log reopened.
    fn recover(&mut self) {
        if self.importer.is_some() {
            return;
        }
        let probe = (|| {
            let mut f = std::fs::File::create(&self.probe)?;
            std::io::Write::write_all(&mut f, &[0u8; 64 << 10])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&self.probe);
        if probe.is_err() {
            return;
        }
        match (self.reopen)() {
            Ok(importer) => {
                self.importer = Some(importer);
                self.storage.recovered();
                crate::log("info", "the event log is writable again", json!({}));
            }
            Err(e) => self.storage.failed(format!("reopening the event log: {e}")),
        }
    }

    fn commit(
        &mut self,
        mut jobs: Vec<Job>,
        applied: Option<&std::sync::mpsc::SyncSender<Committed>>,
    ) {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            let now = Instant::now();
            jobs.splice(
                0..0,
                held.into_iter().map(|events| Job { events, reply: None, received: now }),
            );
        }
        self.recover();
        let Some(importer) = self.importer.as_mut() else {
            let why = self.storage.problem().unwrap_or_default();
            self.fail(jobs, &why);
            return;
        };
        let received = jobs.iter().map(|j| j.received).min().unwrap_or_else(Instant::now);
        let batches: Vec<Vec<Event>> =
            jobs.iter_mut().map(|j| std::mem::take(&mut j.events)).collect();
        match importer.append_at(&batches) {
            Ok(stored) => {
                for (j, s) in jobs.into_iter().zip(&stored) {
                    if let Some(r) = j.reply {
                        let _ = r.send(Ok(s.iter().map(Option::is_some).collect()));
                    }
                }
                if let Some(tx) = applied {
                    let (events, positions): (Vec<Event>, Vec<u64>) = batches
                        .into_iter()
                        .zip(stored)
                        .flat_map(|(b, s)| b.into_iter().zip(s).filter_map(|(e, p)| Some((e, p?))))
                        .unzip();
                    // Blocks when the applier is behind: backpressure reaches the requests.
                    if !events.is_empty() {
                        let _ = tx.send(Committed { events, positions, received, marks: None });
                    }
                }
            }
            Err(e) => {
                // What reached the disk is unknown until the log is reopened: closed now,
                // reopened once a probe write succeeds. Nothing here was acknowledged.
                let why = e.to_string();
                self.importer = None;
                self.storage.failed(why.clone());
                crate::log(
                    "error",
                    "a commit to the event log failed: requests are refused until it can be written again",
                    json!({"error": why}),
                );
                for (j, b) in jobs.iter_mut().zip(batches) {
                    j.events = b;
                }
                self.fail(jobs, &why);
            }
        }
    }

    /// Answers the requests among `jobs` with the failure, and keeps the service's own
    /// events for the next commit (bounded: a disk full for days does not fill memory).
    fn fail(&mut self, jobs: Vec<Job>, why: &str) {
        for j in jobs {
            match j.reply {
                Some(r) => {
                    let _ = r.send(Err(why.to_string()));
                }
                None if self.held.iter().map(Vec::len).sum::<usize>() < 100_000 => {
                    self.held.push(j.events)
                }
                None => crate::log(
                    "error",
                    "alerts and tasks raised while the log could not be written were dropped",
                    json!({"events": j.events.len()}),
                ),
            }
        }
    }
}

impl Writer {
    /// Starts the writer; stored events go on to `applied` when given. It ends when every
    /// request sender is gone, after its last commit. After a failed commit it reopens the
    /// log with `reopen` once a probe write in `data` succeeds. `at_end` runs last, while
    /// the log is still open (nothing else can append to it), told whether everything the
    /// service raised was stored.
    pub fn start(
        importer: Importer,
        reopen: Reopen,
        data: &Path,
        storage: Arc<Storage>,
        queue: usize,
        applied: Option<std::sync::mpsc::SyncSender<Committed>>,
        at_end: Option<Box<dyn FnOnce(bool) + Send>>,
    ) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Job>(queue);
        let (internal, mut internal_rx) = mpsc::unbounded_channel::<Vec<Event>>();
        let (marks, mut marks_rx) = mpsc::unbounded_channel::<()>();
        let data = data.to_path_buf();
        let mut log = Log {
            importer: Some(importer),
            reopen,
            probe: data.join(".tenure-write-probe"),
            storage,
            held: Vec::new(),
        };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                loop {
                    // The service's own events first: they are few and already decided.
                    let next = async {
                        tokio::select! {
                            biased;
                            Some(events) = internal_rx.recv() => Some(Some(Job { events, reply: None, received: Instant::now() })),
                            Some(()) = marks_rx.recv() => Some(None),
                            j = rx.recv() => j.map(Some),
                        }
                    };
                    let first = if log.importer.is_some() {
                        next.await.map(|j| j.ok_or(()))
                    } else {
                        // Unable to write: check again every so often, also without traffic
                        // (so that /healthz turns ready by itself once space is back).
                        match tokio::time::timeout(PROBE_EVERY, next).await {
                            Ok(j) => j.map(|j| j.ok_or(())),
                            Err(_) => {
                                log.recover();
                                if log.importer.is_some() && !log.held.is_empty() {
                                    log.commit(Vec::new(), applied.as_ref());
                                }
                                continue;
                            }
                        }
                    };
                    let first = match first {
                        None => break,
                        Some(Ok(job)) => job,
                        // Between two commits: every batch committed so far is sent.
                        Some(Err(())) => {
                            if let (Some(tx), Some(_)) = (applied.as_ref(), log.importer.as_ref()) {
                                match tenure_engine::state::Marks::take(&data, EventKind::ALL) {
                                    Ok(m) => {
                                        let _ = tx.send(Committed {
                                            events: Vec::new(),
                                            positions: Vec::new(),
                                            received: Instant::now(),
                                            marks: Some(m),
                                        });
                                    }
                                    Err(e) => crate::log(
                                        "error",
                                        "the log's marks could not be taken: the live state is not saved",
                                        json!({"error": e.to_string()}),
                                    ),
                                }
                            }
                            continue;
                        }
                    };
                    // Group commit: every request already waiting joins this commit.
                    let mut jobs = vec![first];
                    let mut n = jobs[0].events.len();
                    while n < 200_000 {
                        if let Ok(events) = internal_rx.try_recv() {
                            n += events.len();
                            jobs.push(Job { events, reply: None, received: Instant::now() });
                            continue;
                        }
                        match rx.try_recv() {
                            Ok(j) => {
                                n += j.events.len();
                                jobs.push(j);
                            }
                            Err(_) => break,
                        }
                    }
                    log.commit(jobs, applied.as_ref());
                }
                // Requests are over. Closing the applier's channel lets it apply what is
                // queued and stop; what it raises meanwhile is committed here until its
                // sender is gone (the Writer's own clone was dropped first).
                drop(applied);
                while let Some(events) = internal_rx.recv().await {
                    log.commit(vec![Job { events, reply: None, received: Instant::now() }], None);
                }
                if !log.held.is_empty() {
                    crate::log(
                        "error",
                        "alerts and tasks raised while the log could not be written were not stored",
                        json!({"events": log.held.iter().map(Vec::len).sum::<usize>()}),
                    );
                }
                if let Some(f) = at_end {
                    f(log.held.is_empty() && log.importer.is_some());
                }
            });
        });
        Writer { tx, internal: Some(internal), marks: Some(marks), thread: Some(thread) }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the waiting requests are committed.
        let (tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, tx));
        self.internal = None;
        self.marks = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Durably appends one request's events; per event, whether it was new.
pub(crate) async fn store(state: &AppState, events: Vec<Event>) -> Result<Vec<bool>, ApiError> {
    let (tx, rx) = oneshot::channel();
    state
        .0
        .writer
        .tx
        .send(Job { events, reply: Some(tx), received: Instant::now() })
        .await
        .map_err(|_| ApiError::new("unavailable", "the writer has stopped"))?;
    rx.await.map_err(|_| ApiError::new("unavailable", "the writer has stopped"))?.map_err(|e| {
        ApiError::new(
            "storage_unavailable",
            format!(
                "the event log cannot be written now ({e}); nothing was stored: send again later"
            ),
        )
    })
}
