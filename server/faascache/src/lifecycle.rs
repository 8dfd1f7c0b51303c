//! How the daemons end: termination signals at every stage, and panics.
//!
//! * Signals (SIGINT, SIGTERM, SIGHUP). A server's start-up (reserving and touching its log
//!   memory, loading its backup directory, enlisting while the coordinator is unreachable) runs
//!   on the main thread and cannot stop half-way, so while a [`Termination`] is *starting* the
//!   signal handler ends the process itself, at once, saying which stage it interrupted. Once it
//!   is *serving* (or for a daemon whose main thread polls from the start), the first signal asks
//!   the main thread for an orderly shutdown and a second one — a slow shutdown — ends the
//!   process at once.
//! * Panics ([`abort_on_panic`]): a panic on any thread of a daemon is logged and aborts the
//!   process; nothing serves on from state a panic may have left half-changed (a master that
//!   dies this way is recovered by the coordinator like any crashed master).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

/// A signal ends the process at once (start-up).
const STARTING: u8 = 0;
/// The first signal goes to the main thread.
const DELIVER: u8 = 1;
/// A signal was delivered: the next one ends the process at once.
const STOPPING: u8 = 2;

/// Exit status when a second signal cuts a shutdown short.
pub const FORCED_EXIT: i32 = 1;

struct State {
    mode: AtomicU8,
    stage: Mutex<String>,
}

/// Termination signals of one daemon (install once per process).
pub struct Termination {
    rx: Receiver<()>,
    state: Arc<State>,
}

impl std::fmt::Debug for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Termination")
            .field("mode", &self.state.mode.load(Ordering::Relaxed))
            .finish()
    }
}

impl Termination {
    /// Install the handler with the first signal going to the main thread (which must poll
    /// [`Termination::recv_timeout`] or [`Termination::requested`] at every stage).
    pub fn delivered() -> Result<Termination> {
        Self::install(DELIVER, String::new())
    }

    /// Install the handler in the *starting* mode: a signal ends the process at once, saying
    /// it interrupted `stage`. Call [`Termination::serving`] once started.
    pub fn starting(stage: impl Into<String>) -> Result<Termination> {
        Self::install(STARTING, stage.into())
    }

    fn install(mode: u8, stage: String) -> Result<Termination> {
        let state = Arc::new(State {
            mode: AtomicU8::new(mode),
            stage: Mutex::new(stage),
        });
        let (tx, rx) = mpsc::channel();
        let s = state.clone();
        ctrlc::set_handler(move || on_signal(&s, &tx))
            .context("cannot install the signal handler")?;
        Ok(Termination { rx, state })
    }

    /// Name the start-up stage a signal would interrupt (while still starting).
    pub fn stage(&self, stage: impl Into<String>) {
        *self.state.stage.lock().unwrap_or_else(|e| e.into_inner()) = stage.into();
    }

    /// Started: from now on the first signal goes to the main thread.
    pub fn serving(&self) {
        let _ = self.state.mode.compare_exchange(
            STARTING,
            DELIVER,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Wait up to `d` for a signal.
    pub fn recv_timeout(&self, d: Duration) -> Result<(), RecvTimeoutError> {
        self.rx.recv_timeout(d)
    }

    /// Has a signal come (without waiting)?
    pub fn requested(&self) -> bool {
        self.rx.try_recv().is_ok()
    }
}

/// What a signal does.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// End the process now with this status, saying why.
    Exit(i32, String),
    /// Tell the main thread.
    Deliver,
}

/// The signal handler's decision (and its change of mode), apart from acting on it.
fn decide(state: &State) -> Action {
    match state.mode.load(Ordering::Acquire) {
        STARTING => {
            let stage = state
                .stage
                .lock()
                .map(|s| s.clone())
                .unwrap_or_else(|e| e.into_inner().clone());
            Action::Exit(0, format!("terminated by a signal while {stage}: exiting"))
        }
        DELIVER => match state.mode.compare_exchange(
            DELIVER,
            STOPPING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Action::Deliver,
            Err(_) => decide(state),
        },
        _ => Action::Exit(
            FORCED_EXIT,
            "a second termination signal during the shutdown: exiting at once".into(),
        ),
    }
}

fn on_signal(state: &State, tx: &mpsc::Sender<()>) {
    match decide(state) {
        Action::Deliver => {
            let _ = tx.send(());
        }
        Action::Exit(code, why) => {
            tracing::warn!("{why}");
            eprintln!("faascache: {why}");
            std::process::exit(code);
        }
    }
}

/// Make a panic on any thread log what panicked (through `tracing` and the standard message on
/// stderr, both written before returning) and abort the process.
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            thread = thread.name().unwrap_or("<unnamed>"),
            at,
            "panic: {msg}; aborting the process (its state may be inconsistent; the cluster \
             recovers a dead master's tablets)"
        );
        default(info);
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(mode: u8, stage: &str) -> State {
        State {
            mode: AtomicU8::new(mode),
            stage: Mutex::new(stage.into()),
        }
    }

    #[test]
    fn starting_exits_at_once_naming_the_stage() {
        let s = state(STARTING, "enlisting with the coordinator");
        match decide(&s) {
            Action::Exit(0, why) => {
                assert!(why.contains("enlisting with the coordinator"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serving_delivers_once_then_a_second_signal_forces_the_exit() {
        let s = state(STARTING, "starting");
        // `serving` moves a starting daemon to delivering; it never undoes a shutdown.
        let t = Termination {
            rx: mpsc::channel().1,
            state: Arc::new(s),
        };
        t.serving();
        assert_eq!(decide(&t.state), Action::Deliver);
        t.serving();
        match decide(&t.state) {
            Action::Exit(code, why) => {
                assert_eq!(code, FORCED_EXIT);
                assert!(why.contains("second termination signal"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
