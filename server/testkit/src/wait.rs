//! Waiting on conditions instead of fixed sleeps.
//!
//! * [`eventually`] — poll until a check passes, panic at the deadline with the last error;
//! * [`continually`] — for "X must NOT happen": assert a check at every poll over a window
//!   (start it only after a positive event proving the system had the chance to misbehave).

use std::fmt::Display;
use std::time::{Duration, Instant};

/// First pause between polls; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// Longest pause between polls.
pub const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Poll `check` (with a short back-off) until it returns `Ok`, and return its value; panic with
/// the last error if it has not succeeded within `deadline`.
#[track_caller]
pub fn eventually<T, E: Display>(deadline: Duration, mut check: impl FnMut() -> Result<T, E>) -> T {
    let end = Instant::now() + deadline;
    let mut pause = FIRST_PAUSE;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= end => {
                panic!("still failing after {deadline:?}: {e}")
            }
            Err(_) => {}
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Assert `check` at every poll (every few milliseconds) for `window`; panic at the first
/// failure with its error. Returns the number of polls (at least 2: at the start and at the end).
#[track_caller]
pub fn continually<E: Display>(
    window: Duration,
    mut check: impl FnMut() -> Result<(), E>,
) -> usize {
    let start = Instant::now();
    let mut polls = 0;
    loop {
        let done = start.elapsed() >= window;
        if let Err(e) = check() {
            panic!("failed after {:?} of {window:?}: {e}", start.elapsed());
        }
        polls += 1;
        if done {
            return polls;
        }
        std::thread::sleep(MAX_PAUSE.min(window.saturating_sub(start.elapsed())));
    }
}

/// A condition that did not hold, and what was seen instead (for the panic message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet(pub String);

impl Display for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Unmet {
    fn from(s: String) -> Unmet {
        Unmet(s)
    }
}

/// `Ok(())` if `cond`, else `Err(Unmet(what()))`: a check for [`eventually`] / [`continually`].
pub fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), Unmet> {
    if cond {
        Ok(())
    } else {
        Err(Unmet(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn eventually_returns_the_first_success() {
        let n = Cell::new(0);
        let v = eventually(Duration::from_secs(60), || {
            n.set(n.get() + 1);
            if n.get() < 3 {
                Err(format!("try {}", n.get()))
            } else {
                Ok(n.get())
            }
        });
        assert_eq!(v, 3);
    }

    #[test]
    #[should_panic(expected = "still failing after 20ms: never")]
    fn eventually_panics_with_the_last_error() {
        eventually(Duration::from_millis(20), || Err::<(), _>("never"));
    }

    #[test]
    fn continually_polls_over_the_window() {
        let polls = continually(Duration::from_millis(30), || Ok::<_, String>(()));
        assert!(polls >= 2, "{polls}");
    }

    #[test]
    #[should_panic(expected = "it happened")]
    fn continually_panics_at_the_first_failure() {
        let n = Cell::new(0);
        continually(Duration::from_secs(60), || {
            n.set(n.get() + 1);
            check(n.get() < 3, || "it happened".into())
        });
    }
}
