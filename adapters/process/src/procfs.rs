//! Reading and parsing the files of Linux `/proc` this crate needs.
//!
//! Parsers take the text of one file and never panic on odd input: a field that is missing or
//! malformed comes back as `None`, and the reading that needs it is left out of the harvest.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

/// The fields of `/proc/PID/stat` this crate reads (see proc(5)).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stat {
    /// The command name (`comm`), as the kernel keeps it: at most 15 bytes.
    pub comm: String,
    /// The one-letter state: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// User-mode CPU time in clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time in clock ticks.
    pub stime: u64,
    /// Start time after boot in clock ticks.
    pub starttime: u64,
}

impl Stat {
    /// Whether the process has exited (a zombie waiting to be reaped, or dead).
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/PID/stat`.
///
/// The command name sits between the first `(` and the *last* `)`, because the name may itself
/// hold spaces and parentheses; the numbered fields follow, field 3 (`state`) first.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = text[open + 1..close].to_owned();
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    // Field n of proc(5) (1-based) is rest[n - 3].
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// The fields of `/proc/PID/status` this crate reads. Sizes are in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Status {
    pub rss: Option<u64>,
    pub peak_rss: Option<u64>,
    pub virtual_size: Option<u64>,
    pub threads: Option<u64>,
    pub voluntary: Option<u64>,
    pub involuntary: Option<u64>,
}

/// Parses `/proc/PID/status`. Kernel threads have no `Vm*` lines; those stay `None`.
pub(crate) fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "VmRSS" => &mut s.rss,
            "VmHWM" => &mut s.peak_rss,
            "VmSize" => &mut s.virtual_size,
            "Threads" => &mut s.threads,
            "voluntary_ctxt_switches" => &mut s.voluntary,
            "nonvoluntary_ctxt_switches" => &mut s.involuntary,
            _ => continue,
        };
        *slot = if key.starts_with("Vm") {
            parse_kb(value)
        } else {
            value.trim().parse().ok()
        };
    }
    s
}

/// Parses a `/proc` size such as `  1234 kB` into bytes (the kernel's kB are KiB).
fn parse_kb(value: &str) -> Option<u64> {
    let mut parts = value.split_ascii_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// The fields of `/proc/meminfo` this crate reads, in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Meminfo {
    pub total: Option<u64>,
    pub free: Option<u64>,
    pub buffers: Option<u64>,
    pub cached: Option<u64>,
    pub available: Option<u64>,
    pub swap_total: Option<u64>,
    pub swap_free: Option<u64>,
}

/// Parses `/proc/meminfo`.
pub(crate) fn parse_meminfo(text: &str) -> Meminfo {
    let mut m = Meminfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut m.total,
            "MemFree" => &mut m.free,
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            "MemAvailable" => &mut m.available,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            _ => continue,
        };
        *slot = parse_kb(value);
    }
    m
}

/// Parses the 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub(crate) fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_ascii_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Parses the boot time (`btime`, Unix seconds) from `/proc/stat`.
pub(crate) fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Turns a `/proc/PID/cmdline` (arguments separated by NUL bytes) into one line, arguments
/// separated by spaces.
pub(crate) fn cmdline_text(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(&[0]).unwrap_or(raw);
    String::from_utf8_lossy(trimmed).replace('\0', " ")
}

/// Clock ticks per second, the unit of the CPU and start times in `/proc/PID/stat`.
pub(crate) fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        #[cfg(unix)]
        {
            // SAFETY: sysconf reads a configuration value; it has no preconditions and touches
            // no memory of ours.
            let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
            if n > 0 {
                return n as u64;
            }
        }
        // USER_HZ is 100 on every Linux architecture in use.
        100
    })
}

/// The number of CPUs online.
pub(crate) fn cpu_count() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: as in `clock_ticks`, sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        if n > 0 {
            return n as u64;
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Voluntary and involuntary context switches of this whole process, exited threads included
/// (`/proc/PID/status` counts the main thread alone).
pub(crate) fn own_context_switches() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        // SAFETY: `rusage` is plain data, for which all-zero bytes are a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable `rusage` that outlives the call.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        if rc == 0 {
            return Some((usage.ru_nvcsw.max(0) as u64, usage.ru_nivcsw.max(0) as u64));
        }
    }
    None
}

/// The boot time in Unix seconds, read once: the kernel derives it from the clock at each read,
/// so caching keeps process start times steady across clock adjustments.
pub(crate) fn boot_time() -> Option<u64> {
    static BOOT: OnceLock<Option<u64>> = OnceLock::new();
    *BOOT.get_or_init(|| {
        fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_btime(&t))
    })
}

/// Everything read about one live process in one harvest.
#[derive(Debug, Clone)]
pub(crate) struct ProcInfo {
    pub pid: u32,
    pub stat: Stat,
    pub status: Status,
    /// Open file descriptors; `None` when `/proc/PID/fd` may not be read (another user's
    /// process).
    pub open_fds: Option<u64>,
}

/// Why a process could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// `/proc/PID` does not exist.
    Missing,
    /// The process has exited and is a zombie.
    Exited,
    /// It exists but could not be read (permissions, a malformed file).
    Unreadable,
}

/// Reads one live process's `/proc/PID/stat` alone: enough to tell whether it is there.
pub(crate) fn read_stat(pid: u32) -> Result<Stat, ReadError> {
    read_stat_in(&Path::new("/proc").join(pid.to_string()))
}

fn read_stat_in(dir: &Path) -> Result<Stat, ReadError> {
    let text = fs::read_to_string(dir.join("stat")).map_err(|e| {
        // ESRCH shows when the process exits between the open and the read.
        if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) {
            ReadError::Missing
        } else {
            ReadError::Unreadable
        }
    })?;
    let stat = parse_stat(&text).ok_or(ReadError::Unreadable)?;
    if stat.exited() {
        return Err(ReadError::Exited);
    }
    Ok(stat)
}

/// Reads one process's stat, status and fd count.
pub(crate) fn read_process(pid: u32) -> Result<ProcInfo, ReadError> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = read_stat_in(&dir)?;
    let status = match fs::read_to_string(dir.join("status")) {
        Ok(t) => parse_status(&t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(_) => return Err(ReadError::Unreadable),
    };
    let open_fds = fs::read_dir(dir.join("fd"))
        .ok()
        .map(|d| d.filter(|e| e.is_ok()).count() as u64);
    Ok(ProcInfo {
        pid,
        stat,
        status,
        open_fds,
    })
}

/// Parses the soft limit of open files from `/proc/PID/limits`
/// (`Max open files            1024                 4096                 files`); `None` when
/// unlimited or missing.
pub(crate) fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_ascii_whitespace().next()?.parse().ok()
}

/// The soft limit of open files of a process, from `/proc/PID/limits`.
pub(crate) fn read_max_open_files(pid: u32) -> Option<u64> {
    let path = Path::new("/proc").join(pid.to_string()).join("limits");
    parse_max_open_files(&fs::read_to_string(path).ok()?)
}

/// The pids in `/proc`, in no particular order.
pub(crate) fn list_pids() -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(pid);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let text = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 120 0 0 0 \
                    7 3 0 0 20 0 2 0 12345 1000 10 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.state, 'S');
        assert_eq!((s.utime, s.stime, s.starttime), (7, 3, 12345));
        assert!(!s.exited());
    }

    #[test]
    fn stat_truncated_or_garbage() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat(") 1 ("), None);
        assert_eq!(
            parse_stat("1 (x) Z 1 2 3 4 5 6 7 8 9 10 a 1 2 3 4 5 6 7 8"),
            None
        );
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tsleep\nVmPeak:\t    8000 kB\nVmSize:\t    5000 kB\n\
                    VmHWM:\t    1200 kB\nVmRSS:\t    1100 kB\nThreads:\t3\n\
                    voluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t2\n";
        let s = parse_status(text);
        assert_eq!(s.rss, Some(1100 * 1024));
        assert_eq!(s.peak_rss, Some(1200 * 1024));
        assert_eq!(s.virtual_size, Some(5000 * 1024));
        assert_eq!(s.threads, Some(3));
        assert_eq!((s.voluntary, s.involuntary), (Some(10), Some(2)));
        // A kernel thread: no Vm lines.
        let k = parse_status("Name:\tkworker/0:1\nThreads:\t1\nVmRSS:\tlots kB\n");
        assert_eq!(k.rss, None);
        assert_eq!(k.threads, Some(1));
    }

    #[test]
    fn meminfo_loadavg_btime() {
        let m = parse_meminfo(
            "MemTotal:       16000 kB\nMemFree: 1 kB\nMemAvailable:    8000 kB\n\
             SwapTotal:       2000 kB\nSwapFree:        500 kB\n",
        );
        assert_eq!(m.total, Some(16000 * 1024));
        assert_eq!(m.available, Some(8000 * 1024));
        assert_eq!(m.free, Some(1024));
        assert_eq!(m.swap_total, Some(2000 * 1024));
        assert_eq!(m.swap_free, Some(500 * 1024));
        assert_eq!(
            parse_loadavg("0.52 0.40 0.31 1/234 5678\n"),
            Some([0.52, 0.40, 0.31])
        );
        assert_eq!(parse_loadavg("0.5 x"), None);
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_btime("cpu 1 2 3\n"), None);
    }

    #[test]
    fn limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63422                63422                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(text), Some(1024));
        assert_eq!(
            parse_max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(parse_max_open_files(""), None);
    }

    #[test]
    fn cmdline() {
        assert_eq!(cmdline_text(b"sleep\x0060\x00"), "sleep 60");
        assert_eq!(cmdline_text(b""), "");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let me = read_process(std::process::id()).unwrap();
        assert!(me.status.rss.unwrap() > 0);
        assert!(me.status.threads.unwrap() >= 1);
        assert!(me.open_fds.unwrap() >= 1);
        assert!(clock_ticks() > 0);
        assert!(boot_time().unwrap() > 1_000_000_000);
        assert!(matches!(read_process(u32::MAX), Err(ReadError::Missing)));
        assert_eq!(read_stat(std::process::id()).unwrap().comm, me.stat.comm);
        assert!(matches!(read_stat(u32::MAX), Err(ReadError::Missing)));
    }
}
