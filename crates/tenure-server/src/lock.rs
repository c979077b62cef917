//! The live state's lock: a read-write lock that counts the readers waiting for it, so that
//! its one writer (the applier, refreshing a block of accounts at a time) lets them in
//! between its holds rather than taking it back before they wake.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{LockResult, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockResult};
use std::time::{Duration, Instant};

pub struct LiveLock<T> {
    lock: RwLock<T>,
    /// Readers in `read`, not yet holding the lock.
    waiting: AtomicUsize,
}

impl<T> LiveLock<T> {
    pub fn new(value: T) -> LiveLock<T> {
        LiveLock { lock: RwLock::new(value), waiting: AtomicUsize::new(0) }
    }

    /// As [`RwLock::read`].
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.waiting.fetch_add(1, SeqCst);
        let guard = self.lock.read();
        self.waiting.fetch_sub(1, SeqCst);
        guard
    }

    /// As [`RwLock::try_read`] (not counted: it does not wait).
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        self.lock.try_read()
    }

    /// As [`RwLock::write`].
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.lock.write()
    }

    pub fn clear_poison(&self) {
        self.lock.clear_poison();
    }

    /// Waits, the lock released, until no reader waits for it, for at most `most` (a
    /// steady stream of readers does not hold the writer up longer). A writer that takes
    /// the lock again at once gets it before the readers it woke have run: measured at a
    /// million accounts, an answer then waited up to 1.8 s through a refresh's blocks.
    pub fn let_readers_in(&self, most: Duration) {
        let until = Instant::now() + most;
        while self.waiting.load(SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc::{Sender, channel};

    /// A reader waiting for `lock` (written by this thread), which holds it once it has it
    /// until told to let go.
    fn waiting_reader(lock: &Arc<LiveLock<u32>>) -> (Sender<()>, std::thread::JoinHandle<()>) {
        let (go, wait) = channel::<()>();
        let reader = {
            let lock = Arc::clone(lock);
            std::thread::spawn(move || {
                let g = lock.read().unwrap();
                let _ = wait.recv();
                drop(g);
            })
        };
        while lock.waiting.load(SeqCst) == 0 {
            std::thread::yield_now();
        }
        (go, reader)
    }

    #[test]
    fn a_writer_lets_the_readers_that_waited_in() {
        let lock = Arc::new(LiveLock::new(0u32));
        let w = lock.write().unwrap();
        let (go, reader) = waiting_reader(&lock);
        drop(w);
        lock.let_readers_in(Duration::from_secs(10));
        assert!(lock.lock.try_write().is_err(), "the reader had the lock before the writer");
        go.send(()).unwrap();
        *lock.write().unwrap() += 1;
        reader.join().unwrap();
        assert_eq!(*lock.read().unwrap(), 1);
    }

    #[test]
    fn a_reader_that_cannot_get_in_holds_the_writer_up_for_at_most_the_limit() {
        let lock = Arc::new(LiveLock::new(0u32));
        let w = lock.write().unwrap();
        let (go, reader) = waiting_reader(&lock);
        // Still written (by another holder, as it were): the reader waits on.
        let t = Instant::now();
        lock.let_readers_in(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(lock.waiting.load(SeqCst), 1);
        drop(w);
        go.send(()).unwrap();
        reader.join().unwrap();
        assert_eq!(lock.waiting.load(SeqCst), 0);
    }
}
