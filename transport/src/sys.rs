//! The few OS services std does not wrap, through `rustix`, except [`thread_cpu_time`] (the
//! only `unsafe` here: a libc call rustix lacks).

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

/// CPU time consumed so far by a live thread of this process (nanosecond clock of
/// `pthread_getcpuclockid`). `None` if the thread has exited or the clock is unavailable.
///
/// The one `unsafe` left in this file: rustix has no per-thread CPU clock of another thread,
/// and `/proc/.../schedstat` reads 0 on some kernels (gVisor), `/proc/.../stat` counts 10 ms
/// ticks.
#[allow(unsafe_code)]
pub(crate) fn thread_cpu_time(thread: libc::pthread_t) -> Option<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` comes from a JoinHandle that is still held (not joined or detached), so it
    // names a valid thread; `clock` is a valid out-pointer.
    if unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; `clock` was just obtained.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time (user + system) of the whole process (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_time() -> Duration {
    let ts = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
