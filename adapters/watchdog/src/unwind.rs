//! Unwinding a captured stack with framehop (DWARF CFI from each loaded module's
//! `.eh_frame_hdr` and `.eh_frame`, found through `dl_iterate_phdr`), then symbolising each
//! frame with `backtrace`.

use framehop::{CacheNative, MayAllocateDuringUnwind, Module, Unwinder, UnwinderNative};

use crate::capture::Captured;

/// At most this many frames are unwound.
const MAX_FRAMES: usize = 256;

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;

/// One frame of a captured stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The code address looked up (a return address minus one, except for the first frame).
    pub address: u64,
    /// The functions at that address, innermost first (more than one where calls were
    /// inlined), each as `name` or `name at file:line`; empty when unknown.
    pub symbols: Vec<String>,
}

/// The unwinder over the modules loaded when it was made.
pub(crate) struct StackUnwinder {
    unwinder: UnwinderNative<Vec<u8>, MayAllocateDuringUnwind>,
    cache: CacheNative<MayAllocateDuringUnwind>,
}

impl std::fmt::Debug for StackUnwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackUnwinder").finish_non_exhaustive()
    }
}

impl StackUnwinder {
    /// An unwinder knowing every module loaded now.
    pub(crate) fn new() -> StackUnwinder {
        let mut unwinder = UnwinderNative::new();
        for module in loaded_modules() {
            unwinder.add_module(module);
        }
        StackUnwinder {
            unwinder,
            cache: CacheNative::new(),
        }
    }

    /// The code addresses of the captured stack, innermost first.
    pub(crate) fn addresses(&mut self, c: &Captured) -> Vec<u64> {
        let mut read = |address: u64| c.read(address).ok_or(());
        #[cfg(target_arch = "x86_64")]
        let regs = framehop::x86_64::UnwindRegsX86_64::new(c.ip, c.sp, c.fp);
        #[cfg(target_arch = "aarch64")]
        let regs = framehop::aarch64::UnwindRegsAarch64::new(c.lr, c.sp, c.fp);
        let mut frames = self
            .unwinder
            .iter_frames(c.ip, regs, &mut self.cache, &mut read);
        let mut out = Vec::new();
        while out.len() < MAX_FRAMES {
            match frames.next() {
                Ok(Some(frame)) => out.push(frame.address_for_lookup()),
                Ok(None) | Err(_) => break,
            }
        }
        out
    }
}

/// Names each address with `backtrace` (debug info where present, else the symbol table).
pub(crate) fn symbolise(addresses: &[u64]) -> Vec<Frame> {
    addresses
        .iter()
        .map(|&address| {
            let mut symbols = Vec::new();
            backtrace::resolve(address as usize as *mut std::ffi::c_void, |symbol| {
                let name = symbol
                    .name()
                    .map(|n| format!("{n:#}"))
                    .unwrap_or_else(|| "?".to_string());
                symbols.push(match (symbol.filename(), symbol.lineno()) {
                    (Some(file), Some(line)) => format!("{name} at {}:{line}", file.display()),
                    _ => name,
                });
            });
            Frame { address, symbols }
        })
        .collect()
}

/// The loaded modules with unwind information, each with copies of its `.eh_frame_hdr` and
/// `.eh_frame`.
fn loaded_modules() -> Vec<Module<Vec<u8>>> {
    let mut modules: Vec<Module<Vec<u8>>> = Vec::new();
    // SAFETY: dl_iterate_phdr calls `each` synchronously with a valid `dl_phdr_info` and the
    // `data` pointer given, which is `&mut modules` for the duration of the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            (&mut modules as *mut Vec<Module<Vec<u8>>>).cast(),
        );
    }
    modules
}

unsafe extern "C" fn each(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: called by dl_iterate_phdr (see `loaded_modules`): `info` is valid for this call
    // and `data` is the `&mut Vec` passed there.
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<Module<Vec<u8>>>>()) };
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers of a loaded module.
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let bias = info.dlpi_addr;
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a non-null dlpi_name is a NUL-terminated string owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let loads: Vec<&libc::Elf64_Phdr> = headers.iter().filter(|h| h.p_type == PT_LOAD).collect();
    let Some(hdr) = headers.iter().find(|h| h.p_type == PT_GNU_EH_FRAME) else {
        return 0;
    };
    let (Some(low), Some(high)) = (
        loads.iter().map(|h| h.p_vaddr).min(),
        loads.iter().map(|h| h.p_vaddr + h.p_memsz).max(),
    ) else {
        return 0;
    };
    let hdr_svma = hdr.p_vaddr..hdr.p_vaddr + hdr.p_memsz;
    // SAFETY: the PT_GNU_EH_FRAME segment lies inside a PT_LOAD segment, which the loader
    // keeps mapped (readable) while the module is loaded; dl_iterate_phdr holds the loader's
    // lock, so it cannot be unloaded during this call.
    let hdr_bytes = unsafe { bytes_at(bias + hdr.p_vaddr, hdr.p_memsz) };
    let Some(eh_frame_svma) = eh_frame_start(&hdr_bytes, hdr.p_vaddr) else {
        return 0;
    };
    // `.eh_frame` runs to its terminator, at most to the end of the segment holding it.
    let Some(segment) = loads
        .iter()
        .find(|h| (h.p_vaddr..h.p_vaddr + h.p_memsz).contains(&eh_frame_svma))
    else {
        return 0;
    };
    let eh_frame_end = segment.p_vaddr + segment.p_filesz.min(segment.p_memsz);
    if eh_frame_end <= eh_frame_svma {
        return 0;
    }
    // SAFETY: inside a loaded PT_LOAD segment (checked above), mapped while the loader lock
    // is held, as above.
    let eh_frame = unsafe { bytes_at(bias + eh_frame_svma, eh_frame_end - eh_frame_svma) };
    let text = loads
        .iter()
        .find(|h| h.p_flags & PF_X != 0)
        .map(|h| h.p_vaddr..h.p_vaddr + h.p_memsz);
    let info = framehop::ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: text,
        eh_frame_svma: Some(eh_frame_svma..eh_frame_end),
        eh_frame: Some(eh_frame),
        eh_frame_hdr_svma: Some(hdr_svma),
        eh_frame_hdr: Some(hdr_bytes),
        ..Default::default()
    };
    modules.push(Module::new(name, bias + low..bias + high, bias, info));
    0
}

/// A copy of `len` bytes at `address`.
///
/// # Safety
/// `[address, address + len)` is mapped and readable.
unsafe fn bytes_at(address: u64, len: u64) -> Vec<u8> {
    // SAFETY: per this function's contract.
    unsafe { std::slice::from_raw_parts(address as usize as *const u8, len as usize) }.to_vec()
}

/// The address (as stated in the module) of `.eh_frame`, from the header of
/// `.eh_frame_hdr` at `hdr_svma` (version 1; pointer encodings absolute or pc-relative, as
/// 4- or 8-byte values).
fn eh_frame_start(hdr: &[u8], hdr_svma: u64) -> Option<u64> {
    if hdr.len() < 8 || hdr[0] != 1 {
        return None;
    }
    let encoding = hdr[1];
    let field = hdr_svma + 4;
    let value: i64 = match encoding & 0x0f {
        0x03 => i64::from(u32::from_le_bytes(hdr[4..8].try_into().ok()?)),
        0x0b => i64::from(i32::from_le_bytes(hdr[4..8].try_into().ok()?)),
        0x04 | 0x0c => i64::from_le_bytes(hdr.get(4..12)?.try_into().ok()?),
        _ => return None,
    };
    match encoding & 0x70 {
        0x00 => Some(value as u64),
        0x10 => Some(field.wrapping_add(value as u64)),
        0x30 => Some(hdr_svma.wrapping_add(value as u64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::tests::Spinner;
    use crate::capture::{capture, prepare_thread};
    use std::time::Duration;

    fn names(frames: &[Frame]) -> String {
        frames
            .iter()
            .flat_map(|f| f.symbols.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn r16_eh_frame_hdr_pointer_encodings() {
        let mut hdr = vec![1, 0x1b, 0x03, 0x3b];
        hdr.extend_from_slice(&(-0x100i32).to_le_bytes());
        assert_eq!(eh_frame_start(&hdr, 0x1000), Some(0x1004 - 0x100));
        hdr[1] = 0x03;
        hdr[4..8].copy_from_slice(&0x5000u32.to_le_bytes());
        assert_eq!(eh_frame_start(&hdr, 0x1000), Some(0x5000));
        hdr[0] = 2;
        assert_eq!(eh_frame_start(&hdr, 0x1000), None, "unknown version");
        assert_eq!(eh_frame_start(&[1, 0x1b], 0x1000), None, "short");
    }

    #[test]
    fn r16_the_unwound_stack_of_a_spinning_thread_names_its_function() {
        let spinner = Spinner::start(true);
        let mut unwinder = StackUnwinder::new();
        let c = capture(spinner.tid, Duration::from_secs(5)).expect("capture");
        let frames = symbolise(&unwinder.addresses(&c));
        let text = names(&frames);
        assert!(
            text.contains("r16_spin_in_a_distinctly_named_function"),
            "{text}"
        );
        // Unwound past the function into the thread's start (more than the first frame).
        assert!(frames.len() >= 3, "{text}");
    }

    #[test]
    fn r16_a_thread_capturing_itself_unwinds_to_its_caller() {
        prepare_thread();
        let mut unwinder = StackUnwinder::new();
        let c = capture(prepare_thread(), Duration::from_secs(5)).expect("capture");
        let text = names(&symbolise(&unwinder.addresses(&c)));
        assert!(
            text.contains("r16_a_thread_capturing_itself_unwinds_to_its_caller"),
            "{text}"
        );
    }

    /// Captures of two spinning threads, in turn, each unwound through the spinning function:
    /// `SAMPLER_WATCHDOG_STRESS_ROUNDS` rounds (default 300). Run under valgrind's memcheck
    /// by `r16_the_capture_stress_is_clean_under_valgrind`.
    #[test]
    fn r16_capture_stress() {
        let rounds: usize = std::env::var("SAMPLER_WATCHDOG_STRESS_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let spinners = [Spinner::start(true), Spinner::start(true)];
        let mut unwinder = StackUnwinder::new();
        let spin = crate::capture::tests::r16_spin_in_a_distinctly_named_function as *const ()
            as usize as u64;
        let mut through = 0;
        for round in 0..rounds {
            let spinner = &spinners[round % 2];
            let c = capture(spinner.tid, Duration::from_secs(30)).expect("capture");
            assert!(!c.stack.is_empty());
            let addresses = unwinder.addresses(&c);
            // The spinning function (a few hundred bytes of code at most) is on every stack.
            if addresses.iter().any(|&a| a >= spin && a < spin + 1024) {
                through += 1;
            }
        }
        println!("stress: {rounds} captures, {through} unwound through the spinning function");
        assert_eq!(through, rounds);
    }

    /// The pause a capture costs the captured thread (time in the signal handler), and the
    /// round trip seen by the watchdog thread: printed, and checked for consistency.
    #[test]
    fn r16_capture_pause() {
        let spinner = Spinner::start(true);
        let mut pauses = Vec::new();
        let mut trips = Vec::new();
        let mut bytes = 0;
        for _ in 0..500 {
            let c = capture(spinner.tid, Duration::from_secs(5)).expect("capture");
            assert!(
                c.pause <= c.round_trip,
                "{:?} > {:?}",
                c.pause,
                c.round_trip
            );
            bytes = c.stack.len() * 8;
            pauses.push(c.pause);
            trips.push(c.round_trip);
        }
        pauses.sort();
        trips.sort();
        let at =
            |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        println!(
            "capture pause (µs, 500 captures, {bytes} stack bytes): min {:.1} median {:.1} p99 {:.1} max {:.1}; \
             round trip (µs): median {:.1} p99 {:.1}",
            at(&pauses, 0.0),
            at(&pauses, 0.5),
            at(&pauses, 0.99),
            at(&pauses, 1.0),
            at(&trips, 0.5),
            at(&trips, 0.99),
        );
    }

    /// `r16_capture_stress` (200 rounds) under valgrind's memcheck: 0 errors, or the run fails.
    #[test]
    fn r16_the_capture_stress_is_clean_under_valgrind() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("valgrind")
            .args(["--error-exitcode=99", "--fair-sched=yes", "--leak-check=no"])
            .arg(&exe)
            .args([
                "unwind::tests::r16_capture_stress",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SAMPLER_WATCHDOG_STRESS_ROUNDS", "200")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "failed to run valgrind: {e}; install it with `apt-get install valgrind` \
                     (or `bash scripts/install-peers.sh`)"
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let summary = stderr
            .lines()
            .find(|l| l.contains("ERROR SUMMARY"))
            .unwrap_or("no ERROR SUMMARY line");
        println!("valgrind: {summary}");
        for line in stdout
            .lines()
            .filter_map(|l| l.find("stress:").map(|at| &l[at..]))
        {
            println!("valgrind: {line}");
        }
        assert!(
            out.status.success() && summary.contains("ERROR SUMMARY: 0 errors"),
            "valgrind reported errors (status {:?}):\n{stderr}\n{stdout}",
            out.status
        );
        assert!(
            stdout.contains("stress: 200 captures, 200 unwound"),
            "{stdout}"
        );
    }
}
