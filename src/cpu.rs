//! The application's one pool of CPU threads. Batch predictions, ONNX parsing for predictions,
//! calibration analyses, featurising for training and the importers' graph building run on it
//! (rayon work-stealing, one thread per core), so concurrent requests share the cores instead of
//! each starting threads of its own. Requests hand their work over with [`CpuPool::run`], which
//! also stops it early (see [`Stop`]) when the request is dropped, e.g. by its timeout.
//!
//! Candle's matrix products are not split over this pool: candle reads `RAYON_NUM_THREADS` on
//! every product (`candle_core::utils::get_num_threads`), and `archdb` sets it to 1 (see
//! `main.rs`). This pool is built with an explicit size, so that setting does not shrink it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// A rayon thread pool; clones share it.
#[derive(Clone)]
pub struct CpuPool(Arc<rayon::ThreadPool>);

impl std::fmt::Debug for CpuPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuPool({} threads)", self.threads())
    }
}

/// Work handed to [`CpuPool::run`] panicked (its payload is logged).
#[derive(Debug, thiserror::Error)]
#[error("a CPU task panicked")]
pub struct Panicked;

impl CpuPool {
    /// A pool of `threads` threads; 0: one per available core.
    pub fn new(threads: usize) -> Self {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("archdb-cpu-{i}"))
            .build()
            .expect("building the CPU pool");
        Self(Arc::new(pool))
    }

    /// The process's pool (one thread per core), built on first use: what servers, the worker,
    /// the importers and the command line share.
    pub fn app() -> &'static CpuPool {
        static APP: OnceLock<CpuPool> = OnceLock::new();
        APP.get_or_init(|| CpuPool::new(0))
    }

    pub fn threads(&self) -> usize {
        self.0.current_num_threads()
    }

    /// Runs `f` on the pool and waits for it (blocking this thread); `f`'s parallel iterators use
    /// the pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.0.install(f)
    }

    /// Runs `f` on the pool from async code, without blocking the runtime. Dropping the returned
    /// future (the request timed out, or its client went away) raises the [`Stop`] that `f`'s
    /// loops read through [`Stop::current`].
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Panicked> {
        let stop = Arc::new(AtomicBool::new(false));
        let raise_on_drop = RaiseOnDrop(stop.clone());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.0.spawn(move || {
            let outer = CURRENT.with(|c| c.replace(Some(stop)));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // Restored: while waiting inside `f`, this thread may have run another task.
            CURRENT.with(|c| *c.borrow_mut() = outer);
            let _ = sender.send(result.map_err(|payload| {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned());
                tracing::error!(
                    panic = message.as_deref().unwrap_or("?"),
                    "a CPU task panicked"
                );
                Panicked
            }));
        });
        let result = receiver.await.map_err(|_| Panicked)?;
        drop(raise_on_drop);
        result
    }
}

thread_local! {
    /// The stop flag of the [`CpuPool::run`] task this thread is running.
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Raises its flag when dropped: when the future awaiting the task is dropped before the task
/// finished (after it finished, nobody reads the flag).
struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether the request a task runs for is gone. Long loops take [`Stop::current`] once on the
/// task's thread (before fanning out), then check [`Stop::raised`] per item or chunk and end
/// early. Outside [`CpuPool::run`] it is never raised.
#[derive(Debug, Clone, Default)]
pub struct Stop(Option<Arc<AtomicBool>>);

impl Stop {
    /// The stop flag of the task running on this thread.
    pub fn current() -> Self {
        Self(CURRENT.with(|c| c.borrow().clone()))
    }

    pub fn raised(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

/// Runs `f` so that its parallel iterators use the application's pool: directly when this thread
/// belongs to a pool already (a request's task, or work of [`CpuPool::install`]), else
/// installed in [`CpuPool::app`]. Without this, they would use rayon's global pool, which
/// `archdb` keeps at one thread for candle's sake.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        CpuPool::app().install(f)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn dropping_the_future_raises_the_stop_flag() {
        let pool = CpuPool::new(1);
        let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
        let (ended, ended_rx) = std::sync::mpsc::channel();
        let task = pool.run(move || {
            let stop = Stop::current();
            started.send(()).unwrap();
            let mut rounds = 0u64;
            while !stop.raised() {
                std::thread::sleep(Duration::from_millis(1));
                rounds += 1;
            }
            ended.send(rounds).unwrap();
        });
        // Polled until the task has started, then dropped.
        tokio::select! {
            _ = task => panic!("the loop ends only when stopped"),
            _ = started_rx.recv() => {}
        }
        let rounds = ended_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the loop stopped");
        assert!(rounds < 10_000);
        // The pool's one thread is free again.
        assert!(!pool.run(|| Stop::current().raised()).await.unwrap());
        assert!(!Stop::current().raised());
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_pool_lives_on() {
        let pool = CpuPool::new(2);
        assert!(pool.run(|| panic!("boom")).await.is_err());
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
    }

    #[test]
    fn on_pool_uses_the_app_pool_outside_any_pool() {
        let threads = on_pool(rayon::current_num_threads);
        assert_eq!(threads, CpuPool::app().threads());
        let small = CpuPool::new(1);
        assert_eq!(small.install(|| on_pool(rayon::current_num_threads)), 1);
    }
}
