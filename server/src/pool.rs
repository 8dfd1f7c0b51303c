//! Bounded worker pools for long operations that requests start (tablet control, migration,
//! recovery, crash checks): a fixed number of threads and a bounded queue, so no network
//! message decides how many OS threads exist. A job beyond the bound is refused at once
//! ([`Busy`]); the caller answers a retryable status. A job that panics aborts the process.

use std::sync::Arc;
use std::thread::JoinHandle;

use faascache_transport::AbortOnUnwind;
use parking_lot::{Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Queue {
    jobs: std::collections::VecDeque<Job>,
    /// Places promised by [`WorkerPool::reserve`] and not yet filled.
    reserved: usize,
    running: usize,
    stop: bool,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    name: &'static str,
    queue: Mutex<Queue>,
    ready: Condvar,
    max_queued: usize,
    threads: usize,
}

/// A pool of at most `threads` workers (started when first needed) with at most `max_queued`
/// jobs waiting.
pub struct WorkerPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("name", &self.shared.name)
            .field("threads", &self.shared.threads)
            .finish()
    }
}

/// The pool is at its bound: every worker is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {pool} pool is busy ({running} running, {queued} queued; the limit is {max} queued): retry shortly")]
pub struct Busy {
    /// Which pool.
    pub pool: &'static str,
    /// Jobs running.
    pub running: usize,
    /// Jobs waiting.
    pub queued: usize,
    /// The queue's bound.
    pub max: usize,
}

impl WorkerPool {
    /// A pool of at most `threads` workers named `faascache-NAME` (started as jobs arrive).
    pub fn new(name: &'static str, threads: usize, max_queued: usize) -> WorkerPool {
        WorkerPool {
            shared: Arc::new(Shared {
                name,
                queue: Mutex::new(Queue {
                    jobs: std::collections::VecDeque::new(),
                    reserved: 0,
                    running: 0,
                    stop: false,
                    workers: Vec::new(),
                }),
                ready: Condvar::new(),
                max_queued,
                threads: threads.max(1),
            }),
        }
    }

    /// Queue `job`, or refuse it if the pool is at its bound (or cannot start a worker).
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Busy> {
        self.reserve()?.submit(job);
        Ok(())
    }

    /// Promise a place for a job (so the caller can answer "busy" while it still holds what
    /// the job would take, e.g. the RPC's responder).
    pub fn reserve(&self) -> Result<Reservation<'_>, Busy> {
        let mut q = self.shared.queue.lock();
        let waiting = q.jobs.len() + q.reserved;
        let idle = q.workers.len().saturating_sub(q.running);
        if idle <= waiting && q.workers.len() < self.shared.threads && !q.stop {
            let s = self.shared.clone();
            match std::thread::Builder::new()
                .name(format!("faascache-{}", self.shared.name))
                .spawn(move || work(&s))
            {
                Ok(h) => q.workers.push(h),
                Err(e) => {
                    tracing::error!(pool = self.shared.name, error = %e, "cannot start a worker thread")
                }
            }
        }
        let idle = q.workers.len().saturating_sub(q.running);
        if q.stop || q.workers.is_empty() || waiting >= self.shared.max_queued + idle {
            return Err(Busy {
                pool: self.shared.name,
                running: q.running,
                queued: waiting,
                max: self.shared.max_queued,
            });
        }
        q.reserved += 1;
        Ok(Reservation {
            pool: self,
            used: false,
        })
    }
}

/// A promised place in a [`WorkerPool`]'s queue.
#[derive(Debug)]
pub struct Reservation<'a> {
    pool: &'a WorkerPool,
    used: bool,
}

impl Reservation<'_> {
    /// Queue the job in the promised place.
    pub fn submit(mut self, job: impl FnOnce() + Send + 'static) {
        self.used = true;
        let shared = &self.pool.shared;
        let mut q = shared.queue.lock();
        q.reserved -= 1;
        q.jobs.push_back(Box::new(job));
        drop(q);
        shared.ready.notify_one();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.pool.shared.queue.lock().reserved -= 1;
        }
    }
}

fn work(s: &Shared) {
    loop {
        let job = {
            let mut q = s.queue.lock();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    q.running += 1;
                    break j;
                }
                if q.stop {
                    return;
                }
                s.ready.wait(&mut q);
            }
        };
        // A job that panics may leave what it changed half-done: the process ends rather than
        // serve on (and the pool would otherwise lose the worker and its `running` count).
        let guard = AbortOnUnwind::new("a worker pool's job", s.name);
        job();
        std::mem::forget(guard);
        s.queue.lock().running -= 1;
    }
}

impl Drop for WorkerPool {
    /// Queued jobs still run; then the workers end.
    fn drop(&mut self) {
        let workers = {
            let mut q = self.shared.queue.lock();
            q.stop = true;
            std::mem::take(&mut q.workers)
        };
        self.shared.ready.notify_all();
        for w in workers {
            if w.thread().id() != std::thread::current().id() {
                let _ = w.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn runs_jobs_and_refuses_beyond_the_bound() {
        let pool = WorkerPool::new("test", 1, 2);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let done = Arc::new(AtomicUsize::new(0));
        // One runs (and blocks), two wait: the fourth is refused.
        let d = done.clone();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        started_rx.recv().unwrap();
        for _ in 0..2 {
            let d = done.clone();
            pool.submit(move || {
                d.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let busy = pool.submit(|| {}).unwrap_err();
        assert_eq!((busy.running, busy.queued, busy.max), (1, 2, 2));
        assert!(busy.to_string().contains("retry"));
        gate_tx.send(()).unwrap();
        drop(pool); // queued jobs still run
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }

    /// Set in the child process of [`a_panicking_job_aborts_the_process`].
    const CHILD: &str = "FAASCACHE_TEST_POOL_PANIC_CHILD";

    /// A job that panics ends the process (it used to end only its worker, the pool serving on
    /// one worker short with its `running` count stuck). Runs [`panicking_job_child`] in a child
    /// process: this test binary again.
    #[test]
    fn a_panicking_job_aborts_the_process() {
        use std::os::unix::process::ExitStatusExt;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pool::tests::panicking_job_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the child");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(
            out.status.signal(),
            Some(6), // SIGABRT
            "{}: {stdout} {stderr}",
            out.status
        );
        assert!(stdout.contains("SUBMITTED"), "{stdout}");
        assert!(!stdout.contains("SURVIVED"), "{stdout}");
        assert!(
            stderr.contains("job panics on purpose") && stderr.contains("aborting the process"),
            "{stderr}"
        );
    }

    /// The child side of [`a_panicking_job_aborts_the_process`]; nothing in a normal run.
    #[test]
    fn panicking_job_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let pool = WorkerPool::new("test", 1, 2);
        pool.submit(|| panic!("job panics on purpose")).unwrap();
        println!("SUBMITTED");
        std::thread::sleep(std::time::Duration::from_secs(5));
        let (tx, rx) = mpsc::channel();
        let _ = pool.submit(move || tx.send(()).unwrap());
        if rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok() {
            println!("SURVIVED");
        }
    }
}
