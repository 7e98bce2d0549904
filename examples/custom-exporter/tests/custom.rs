//! The custom kind end to end: chosen in a TOML file, built by the linked binary, receiving
//! real snapshots, filtered like any built-in exporter.

use std::process::Command;

#[test]
fn r14_a_custom_kind_is_chosen_in_the_file_and_receives_real_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("h.csv");
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[exporter]]\nkind = \"csv\"\npath = {:?}\ninclude = [\"process.*\", \"system.*\"]\n",
            csv.to_str().unwrap()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_sampler-with-csv");
    let check = Command::new(bin)
        .args(["check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("exporter csv (kind csv)"));

    let out = Command::new(bin)
        .args(["dump", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some("time,name,labels,value"));
    let rows: Vec<&str> = rows.collect();
    assert!(rows.iter().any(|r| r.contains(",process.memory")), "{text}");
    assert!(rows.iter().any(|r| r.contains(",system.")), "{text}");
    // The shaping keys apply to a custom kind too: no self-metrics got through.
    assert!(rows.iter().all(|r| !r.contains(",sampler.")), "{text}");
    // And a misspelt key of the custom kind is caught with a suggestion.
    std::fs::write(&cfg, "[[exporter]]\nkind = \"csv\"\npaht = \"x\"\n").unwrap();
    let bad = Command::new(bin)
        .args(["check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("unknown key `paht` in exporter csv"), "{err}");
    assert!(err.contains("did you mean `path`?"), "{err}");
}
