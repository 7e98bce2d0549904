//! Reading and parsing the files of Linux `/proc` this crate needs.
//!
//! Parsers take the text of one file and never panic on odd input: a field that is missing or
//! malformed comes back as `None`, and the reading that needs it is left out of the harvest.
//!
//! Every file is read through [`read_bounded`]: opened without blocking, refused unless it is a
//! regular file, and read up to a size limit, so a FIFO, a device or a huge file costs neither a
//! hung harvest nor memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;
use std::sync::OnceLock;

/// The most read of one `/proc` file: the fields this crate needs sit well within it (a
/// `/proc/PID/stat` line is under 1 KiB, a status file a few KiB).
pub(crate) const PROC_LIMIT: usize = 64 * 1024;
/// The most read of `/proc/stat`, whose `btime` line follows one line per CPU and the interrupt
/// counts.
const PROC_STAT_LIMIT: usize = 1024 * 1024;

/// Reads at most `limit` bytes of the regular file at `path`.
///
/// The file is opened with `O_NONBLOCK` (a FIFO opens at once instead of waiting for a writer)
/// and refused unless it is a regular file (a FIFO, socket, device or directory is an error
/// naming what it is), so the read never blocks and never grows past `limit`; whatever follows
/// the limit is left unread. Files whose open may have effects (a device) are checked before
/// they are opened.
pub(crate) fn read_bounded(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    // A path given by a person may name a device, whose mere open can have effects: refuse it
    // unopened. The check on the open file below covers a path swapped in between.
    check_regular(&fs::metadata(path)?)?;
    read_open(open_nonblocking(path)?, limit)
}

/// As [`read_bounded`], for files of `/proc`, which are opened at once: a `/proc` path is never a
/// device, and under a full descriptor table the open must be what fails.
pub(crate) fn read_proc(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    read_open(open_nonblocking(path)?, limit)
}

fn open_nonblocking(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    options.open(path)
}

fn read_open(file: File, limit: usize) -> io::Result<Vec<u8>> {
    check_regular(&file.metadata()?)?;
    let mut buf = Vec::with_capacity(limit.min(4096));
    file.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// An error unless `meta` is a regular file, naming what it is instead.
fn check_regular(meta: &fs::Metadata) -> io::Result<()> {
    let t = meta.file_type();
    if t.is_file() {
        return Ok(());
    }
    let what = if t.is_dir() {
        "a directory"
    } else {
        file_kind(&t)
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file but {what}"),
    ))
}

#[cfg(unix)]
fn file_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn file_kind(_: &fs::FileType) -> &'static str {
    "a special file"
}

/// The fields of `/proc/PID/stat` this crate reads (see proc(5)).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stat {
    /// The command name (`comm`), as the kernel keeps it: at most 15 bytes, not necessarily
    /// UTF-8.
    pub comm: Vec<u8>,
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
/// hold spaces and parentheses; it is any bytes a process chose (see `prctl(PR_SET_NAME)`), so
/// it is kept as bytes. The numbered fields follow, field 3 (`state`) first.
pub(crate) fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let open = raw.iter().position(|&b| b == b'(')?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = raw[open + 1..close].to_vec();
    let text = std::str::from_utf8(&raw[close + 1..]).ok()?;
    let rest: Vec<&str> = text.split_ascii_whitespace().collect();
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
/// separated by spaces; bytes that are not UTF-8 are kept as they are.
pub(crate) fn cmdline_bytes(raw: &[u8]) -> Vec<u8> {
    let trimmed = raw.strip_suffix(&[0]).unwrap_or(raw);
    trimmed
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect()
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
        read_proc(Path::new("/proc/stat"), PROC_STAT_LIMIT)
            .ok()
            .and_then(|t| parse_btime(&String::from_utf8_lossy(&t)))
    })
}

/// Everything read about one live process in one harvest.
#[derive(Debug, Clone)]
pub(crate) struct ProcInfo {
    pub pid: u32,
    /// The command name as shown and labelled: `comm`, bytes that are not UTF-8 replaced.
    pub name: String,
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
    /// It could not be read, and whether it is there is not known from the read alone: out of
    /// file descriptors, no permission, a malformed file. The error names the file and the
    /// cause.
    Unreadable(io::Error),
}

impl ReadError {
    fn from_io(path: &Path, e: io::Error) -> ReadError {
        // ESRCH shows when the process exits between the open and the read.
        if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) {
            ReadError::Missing
        } else {
            ReadError::Unreadable(io::Error::new(
                e.kind(),
                format!("failed to read {}: {e}", path.display()),
            ))
        }
    }
}

/// Reads one live process's `/proc/PID/stat` alone: enough to tell whether it is there.
pub(crate) fn read_stat(pid: u32) -> Result<Stat, ReadError> {
    read_stat_in(&Path::new("/proc").join(pid.to_string()))
}

fn read_stat_in(dir: &Path) -> Result<Stat, ReadError> {
    let path = dir.join("stat");
    let raw = read_proc(&path, PROC_LIMIT).map_err(|e| ReadError::from_io(&path, e))?;
    let stat = parse_stat(&raw).ok_or_else(|| {
        ReadError::Unreadable(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("failed to parse {}", path.display()),
        ))
    })?;
    if stat.exited() {
        return Err(ReadError::Exited);
    }
    Ok(stat)
}

/// Whether `/proc/PID` exists, told without a file descriptor (a `stat` of the directory), so
/// that it holds when descriptors run out; `None` when even that fails for another reason.
pub(crate) fn exists(pid: u32) -> Option<bool> {
    match fs::metadata(Path::new("/proc").join(pid.to_string())) {
        Ok(_) => Some(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
        Err(_) => None,
    }
}

/// Reads one process's stat, status and fd count.
pub(crate) fn read_process(pid: u32) -> Result<ProcInfo, ReadError> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = read_stat_in(&dir)?;
    let path = dir.join("status");
    let status = match read_proc(&path, PROC_LIMIT) {
        Ok(t) => parse_status(&String::from_utf8_lossy(&t)),
        Err(e) => return Err(ReadError::from_io(&path, e)),
    };
    let open_fds = fs::read_dir(dir.join("fd"))
        .ok()
        .map(|d| d.filter(|e| e.is_ok()).count() as u64);
    Ok(ProcInfo {
        pid,
        name: String::from_utf8_lossy(&stat.comm).into_owned(),
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
        let s = parse_stat(text.as_bytes()).unwrap();
        assert_eq!(s.comm, b"a (b) c");
        assert_eq!(s.state, 'S');
        assert_eq!((s.utime, s.stime, s.starttime), (7, 3, 12345));
        assert!(!s.exited());
    }

    #[test]
    fn stat_truncated_or_garbage() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
        assert_eq!(parse_stat(b") 1 ("), None);
        assert_eq!(
            parse_stat(b"1 (x) Z 1 2 3 4 5 6 7 8 9 10 a 1 2 3 4 5 6 7 8"),
            None
        );
    }

    #[test]
    fn stat_with_a_name_that_is_not_utf8() {
        let text = b"9 (caf\xe9\n\x1b[31m) S 1 9 9 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 55 1 1 1";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, b"caf\xe9\n\x1b[31m");
        assert_eq!((s.utime, s.stime, s.starttime), (7, 3, 55));
    }

    #[test]
    fn read_errors_keep_their_cause() {
        let path = Path::new("/proc/42/stat");
        let e = ReadError::from_io(path, io::Error::from_raw_os_error(24));
        match e {
            ReadError::Unreadable(e) => assert_eq!(
                e.to_string(),
                "failed to read /proc/42/stat: Too many open files (os error 24)"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ReadError::from_io(path, io::Error::from(io::ErrorKind::NotFound)),
            ReadError::Missing
        ));
        assert!(matches!(
            ReadError::from_io(path, io::Error::from_raw_os_error(3)),
            ReadError::Missing
        ));
    }

    #[cfg(unix)]
    #[test]
    fn bounded_reads_refuse_special_files_and_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        fs::write(&big, vec![b'7'; 10_000]).unwrap();
        assert_eq!(read_bounded(&big, 100).unwrap().len(), 100);
        assert_eq!(read_proc(&big, 1 << 20).unwrap().len(), 10_000);
        for (path, what) in [
            (Path::new("/dev/zero"), "a character device"),
            (dir.path(), "a directory"),
        ] {
            let e = read_bounded(path, 100).unwrap_err();
            assert_eq!(e.to_string(), format!("not a regular file but {what}"));
            let e = read_proc(path, 100).unwrap_err();
            assert_eq!(e.to_string(), format!("not a regular file but {what}"));
        }
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
        assert_eq!(cmdline_bytes(b"sleep\x0060\x00"), b"sleep 60");
        assert_eq!(cmdline_bytes(b"caf\xe9\x00-x\x00"), b"caf\xe9 -x");
        assert_eq!(cmdline_bytes(b""), b"");
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
        assert_eq!(exists(std::process::id()), Some(true));
        assert_eq!(exists(u32::MAX), Some(false));
        assert_eq!(read_stat(std::process::id()).unwrap().comm, me.stat.comm);
        assert!(matches!(read_stat(u32::MAX), Err(ReadError::Missing)));
    }
}
