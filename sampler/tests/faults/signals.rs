//! Signals the command does not act on leave the run going; a watched process stopped and
//! continued stays up; the sampler itself stopped and continued carries on.

use std::time::Duration;

use crate::harness::*;
use crate::support::*;

#[test]
fn r10_sighup_sigusr1_sigusr2_are_ignored_and_the_run_goes_on() {
    let mut bg = Background::spawn(&["run", "--interval", "100ms"]);
    bg.stdout
        .wait_until("the first harvest", Duration::from_secs(10), |l| {
            !headers(l).is_empty()
        });
    for sig in [libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2] {
        let before = headers(&bg.stdout.snapshot()).len();
        bg.signal(sig);
        bg.stdout
            .wait_until("two more harvests", Duration::from_secs(10), |l| {
                headers(l).len() >= before + 2
            });
    }
    bg.signal(libc::SIGTERM);
    assert_eq!(bg.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(bg.stderr.text(), "");
    let all = bg.stdout.snapshot();
    assert_eq!(
        all.last().map(String::as_str),
        Some(""),
        "a whole last table"
    );
}

#[test]
fn r10_a_stopped_and_continued_target_stays_up() {
    let sleep = Sleeper::start("60");
    let pid = sleep.pid().to_string();
    let mut bg = Background::spawn(&[
        "run",
        "--interval",
        "100ms",
        "--format",
        "json",
        "--pid",
        &pid,
    ]);
    let up = |l: &String| l.contains("\"process.up\"") && l.contains(&format!("pid:{pid}"));
    bg.stdout
        .wait_until("a harvest", Duration::from_secs(10), |l| l.iter().any(up));
    let kill = |sig| {
        // SAFETY: kill(2) on our own live child with a valid signal.
        assert_eq!(unsafe { libc::kill(sleep.pid() as i32, sig) }, 0);
    };
    kill(libc::SIGSTOP);
    let at = bg.stdout.snapshot().len();
    bg.stdout.wait_until(
        "three harvests while stopped",
        Duration::from_secs(10),
        |l| l[at..].iter().filter(|l| up(l)).count() >= 3,
    );
    kill(libc::SIGCONT);
    let at2 = bg.stdout.snapshot().len();
    bg.stdout
        .wait_until("three harvests after", Duration::from_secs(10), |l| {
            l[at2..].iter().filter(|l| up(l)).count() >= 3
        });
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let ups: Vec<String> = bg.stdout.snapshot()[at..]
        .iter()
        .filter(|l| up(l))
        .cloned()
        .collect();
    assert!(ups.iter().all(|l| l.contains("\"value\":1")), "{ups:?}");
    assert_eq!(bg.stderr.text(), "");
}

#[test]
fn r10_the_sampler_stopped_and_continued_carries_on_without_a_burst() {
    let mut bg = Background::spawn(&["run", "--interval", "100ms", "--format", "json"]);
    bg.stdout
        .wait_until("a harvest", Duration::from_secs(10), |l| !l.is_empty());
    bg.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1000));
    let at = bg.stdout.snapshot().len();
    bg.signal(libc::SIGCONT);
    bg.stdout
        .wait_until("harvests after continuing", Duration::from_secs(10), |l| {
            harvests(&l[at..]).len() >= 4
        });
    let after = harvests(&bg.stdout.snapshot()[at..]);
    // Missed harvests are skipped, not made up in a burst: consecutive harvests after the
    // first are at least most of an interval apart.
    let times: Vec<u64> = after.iter().map(|(t, _)| millis_of_day(t)).collect();
    let closest = times[1..].windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(closest >= 50, "harvest times after SIGCONT: {times:?}");
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(bg.stderr.text(), "");
}
