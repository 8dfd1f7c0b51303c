//! Facts from /proc: server CPU time and resident memory, the process listening on a port,
//! and machine metadata.

use serde::{Deserialize, Serialize};
use std::fs;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clk_tck() -> f64 {
    let t = rustix::param::clock_ticks_per_second();
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process in seconds (all threads).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&s).map(|ticks| ticks as f64 / clk_tck())
}

/// utime + stime ticks from the text of /proc/PID/stat (fields 14 and 15; the command name in
/// parentheses may contain spaces, so fields are counted after the last ')').
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11, stime index 12
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `/proc/PID/status` field value (first token), e.g. `VmRSS` → "12345" (kB).
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim().to_string())
    })
}

/// Resident set size in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let v = status_field(pid, "VmRSS")?;
    let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// Command line, space-separated.
pub fn cmdline(pid: u32) -> Option<String> {
    let b = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let s: Vec<String> = b
        .split(|&c| c == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Some(s.join(" "))
}

/// The pid of the local process with a listening TCP socket on `port` (via /proc/net/tcp{,6}
/// socket inodes and /proc/*/fd links). Needs permission to read other processes' fds.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(s) = fs::read_to_string(f) {
            inodes.extend(listening_inodes(&s, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(t) = fs::read_link(fd.path()) {
                if targets.iter().any(|x| t.as_os_str() == x.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Inodes of sockets in LISTEN state (st 0A) on `port`, from the text of /proc/net/tcp.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let Some((_, p)) = f[1].rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(p, 16).ok() == Some(port) {
            if let Ok(i) = f[9].parse() {
                out.push(i);
            }
        }
    }
    out
}

/// Machine metadata recorded with every result file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// /proc/cpuinfo "model name"
    pub cpu_model: String,
    /// online CPUs
    pub nproc: usize,
    /// kernel release
    pub kernel: String,
    /// host name
    pub hostname: String,
    /// total memory, bytes
    pub mem_total_bytes: u64,
    /// CPU frequency scaling governor of cpu0, if exposed
    pub governor: Option<String>,
    /// whether /proc/cpuinfo shows the hypervisor flag
    pub virtualized: bool,
    /// /proc/loadavg when the run started (other work on a shared machine shows here)
    pub loadavg: String,
}

impl Machine {
    /// Reads the machine's facts.
    pub fn detect() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|x| x.1.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let virtualized = cpuinfo
            .lines()
            .any(|l| l.starts_with("flags") && l.contains(" hypervisor"));
        let nproc = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string();
        let mem_total_bytes = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        let governor = fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
            .ok()
            .map(|s| s.trim().to_string());
        Self {
            cpu_model,
            nproc,
            kernel,
            hostname,
            mem_total_bytes,
            governor,
            virtualized,
            loadavg: fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// Measures a process's CPU use over an interval: `start` then `cores_used`.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    cpu0: f64,
    t0: std::time::Instant,
}

impl CpuMeter {
    /// Starts measuring `pid`; `None` if its stat is unreadable.
    pub fn start(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            cpu0: cpu_seconds(pid)?,
            t0: std::time::Instant::now(),
        })
    }

    /// Average cores used since `start` (1.0 = one core fully busy).
    pub fn cores_used(&self) -> Option<f64> {
        let cpu1 = cpu_seconds(self.pid)?;
        let wall = self.t0.elapsed().as_secs_f64();
        (wall > 0.0).then(|| (cpu1 - self.cpu0) / wall)
    }
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let s = "1234 (redis server) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 5 0 100";
        assert_eq!(parse_stat_cpu(s), Some(333));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn finds_listening_inode() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:18EB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(t, 6379), vec![4242]);
        assert!(listening_inodes(t, 11211).is_empty());
    }

    #[test]
    fn self_process_facts() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cmdline(me).is_some());
        let m = Machine::detect();
        assert!(m.nproc >= 1);
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
