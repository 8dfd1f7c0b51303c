//! How the agent changes the cache's size: [`Resizer`]. The real one calls the local server's
//! resize RPC through the client (`faascache resize SERVER SIZE`); [`FakeResizer`] is an
//! in-memory cache for tests and trials, [`CommandResizer`] runs a configured program.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::AgentError;

/// Reads and sets the local cache server's memory budget. Calls may block (an RPC that
/// returns once the memory is released); the agent makes one at a time.
pub trait Resizer: Send + Sync {
    /// The cache's current budget in bytes.
    fn budget(&self) -> Result<u64, AgentError>;

    /// Ask for a budget of `bytes`; returns the budget the server now has (it may round), or
    /// [`AgentError::Refused`] with its reason. A refusal is logged and shown, never fatal.
    fn resize(&self, bytes: u64) -> Result<u64, AgentError>;
}

/// An in-memory "cache": its budget is a number; it can be told to refuse sizes below a floor
/// and to take some time per resize. Records every call.
#[derive(Debug)]
pub struct FakeResizer {
    inner: Mutex<FakeState>,
}

#[derive(Debug)]
struct FakeState {
    budget: u64,
    refuse_below: u64,
    delay: Duration,
    calls: Vec<u64>,
}

impl FakeResizer {
    /// A fake cache with this budget.
    pub fn new(budget: u64) -> Self {
        FakeResizer {
            inner: Mutex::new(FakeState {
                budget,
                refuse_below: 0,
                delay: Duration::ZERO,
                calls: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuse resizes below `bytes` from now on.
    pub fn refuse_below(&self, bytes: u64) {
        self.lock().refuse_below = bytes;
    }

    /// Take `delay` per resize (as a server releasing memory does).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Every size asked for, in order.
    pub fn calls(&self) -> Vec<u64> {
        self.lock().calls.clone()
    }
}

impl Resizer for FakeResizer {
    fn budget(&self) -> Result<u64, AgentError> {
        Ok(self.lock().budget)
    }

    fn resize(&self, bytes: u64) -> Result<u64, AgentError> {
        let delay = {
            let mut s = self.lock();
            s.calls.push(bytes);
            if bytes < s.refuse_below {
                return Err(AgentError::Refused(format!(
                    "{bytes} bytes is below the server's minimum of {}",
                    s.refuse_below
                )));
            }
            s.delay
        };
        std::thread::sleep(delay);
        let mut s = self.lock();
        s.budget = bytes;
        Ok(bytes)
    }
}

/// Runs a program: `PROGRAM ARGS... budget` prints the budget in bytes, `PROGRAM ARGS...
/// resize BYTES` resizes and prints the new budget (the last line of stdout, a whole number).
/// A non-zero exit is a refusal whose reason is the last line of stderr. A run that takes
/// longer than the timeout is killed and counts as a refusal.
#[derive(Debug, Clone)]
pub struct CommandResizer {
    program: String,
    args: Vec<String>,
    timeout: Duration,
}

/// Most bytes of a command's stdout or stderr the agent reads.
const MAX_OUTPUT: u64 = 64 * 1024;

impl CommandResizer {
    /// `command` is split on whitespace: the program, then fixed arguments.
    pub fn new(command: &str, timeout: Duration) -> Result<Self, AgentError> {
        let mut words = command.split_whitespace().map(str::to_string);
        let program = words.next().ok_or_else(|| {
            AgentError::Refused("the resize command is empty: give a program to run".into())
        })?;
        Ok(CommandResizer {
            program,
            args: words.collect(),
            timeout,
        })
    }

    fn run(&self, extra: &[String]) -> Result<u64, AgentError> {
        let what = format!(
            "{} {} {}",
            self.program,
            self.args.join(" "),
            extra.join(" ")
        );
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| AgentError::Refused(format!("cannot run {what}: {e}")))?;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let (out, err) = (drain(out), drain(err));
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if start.elapsed() < self.timeout => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(AgentError::Refused(format!(
                        "{what} did not finish within {:?}; killed",
                        self.timeout
                    )));
                }
            }
        };
        let (out, err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        if !status.success() {
            let why = err.lines().last().unwrap_or("no message on stderr");
            return Err(AgentError::Refused(format!(
                "{what} failed ({status}): {why}"
            )));
        }
        let last = out.lines().last().unwrap_or("").trim();
        last.parse().map_err(|_| {
            AgentError::Refused(format!(
                "{what} printed {last:?} where the budget in bytes (a whole number) was expected"
            ))
        })
    }
}

/// Read up to [`MAX_OUTPUT`] bytes of a pipe on a thread (so a chatty child cannot block on a
/// full pipe while the agent waits for it).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = pipe {
            let _ = p.take(MAX_OUTPUT).read_to_string(&mut s);
        }
        s
    })
}

impl Resizer for CommandResizer {
    fn budget(&self) -> Result<u64, AgentError> {
        self.run(&["budget".into()])
            .map_err(|e| AgentError::Budget(e.to_string()))
    }

    fn resize(&self, bytes: u64) -> Result<u64, AgentError> {
        self.run(&["resize".into(), bytes.to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_records_and_refuses() {
        let f = FakeResizer::new(100);
        assert_eq!(f.budget().unwrap(), 100);
        assert_eq!(f.resize(50).unwrap(), 50);
        f.refuse_below(40);
        let e = f.resize(10).unwrap_err();
        assert!(e.to_string().contains("below the server's minimum"), "{e}");
        assert_eq!(f.budget().unwrap(), 50);
        assert_eq!(f.calls(), vec![50, 10]);
    }

    #[test]
    fn a_command_resizes_and_its_failures_are_refusals() {
        let dir = faascache_testkit::tempdir("agent-cmd");
        let script = dir.join("cache.sh");
        let state = dir.join("budget");
        std::fs::write(&state, "1000\n").unwrap();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nS={}\ncase $1 in\n budget) cat $S;;\n resize) if [ $2 -lt 10 ]; then echo too small >&2; exit 3; fi; echo $2 > $S; echo resized; echo $2;;\n slow) sleep 5;;\n *) echo what;;\nesac\n",
                state.display()
            ),
        )
        .unwrap();
        let sh = format!("sh {}", script.display());
        let r = CommandResizer::new(&sh, Duration::from_secs(5)).unwrap();
        assert_eq!(r.budget().unwrap(), 1000);
        assert_eq!(r.resize(500).unwrap(), 500);
        assert_eq!(r.budget().unwrap(), 500);
        let e = r.resize(5).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
        let slow = CommandResizer::new(&format!("{sh} slow"), Duration::from_millis(100)).unwrap();
        let e = slow.resize(1).unwrap_err();
        assert!(e.to_string().contains("killed"), "{e}");
        let odd = CommandResizer::new(&format!("{sh} other"), Duration::from_secs(5)).unwrap();
        let e = odd.budget().unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
        let e = CommandResizer::new("/nonexistent/x", Duration::from_secs(1))
            .unwrap()
            .resize(1)
            .unwrap_err();
        assert!(e.to_string().contains("cannot run"), "{e}");
        assert!(CommandResizer::new("  ", Duration::from_secs(1)).is_err());
    }
}
