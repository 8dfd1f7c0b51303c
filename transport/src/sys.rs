//! The few OS services std does not wrap, through `rustix` (no `unsafe` here).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::time::{clock_gettime, ClockId};

/// Wait until `fd` is readable (and/or writable) or `timeout` passes. Returns whether it is ready.
/// `timeout == None` waits forever; `Some(ZERO)` only checks.
pub(crate) fn poll_fd(
    fd: impl AsFd,
    read: bool,
    write: bool,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let mut events = PollFlags::empty();
    if read {
        events |= PollFlags::IN;
    }
    if write {
        events |= PollFlags::OUT;
    }
    let mut fds = [PollFd::new(&fd, events)];
    let ts = timeout.map(|d| Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    match rustix::event::poll(&mut fds, ts.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The calling thread's kernel thread id, for [`thread_cpu_time`].
pub(crate) fn current_tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// CPU time (user + system) consumed so far by thread `tid` of this process: the first field of
/// `/proc/self/task/<tid>/schedstat` (nanoseconds on a CPU, what the thread's CPU-time clock
/// reads). `None` if the thread has exited or the kernel lacks schedstat.
pub(crate) fn thread_cpu_time(tid: i32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// CPU time (user + system) of the whole process (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_time() -> Duration {
    let ts = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
