//! `ferry demo` as CI runs it: small sizes, to the end by itself, exit 0, 0 mismatches, and
//! every phase an operator would see. Address 127.0.156.1.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::process::Command;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

#[test]
fn a_small_demo_migrates_validates_cuts_over_and_reports_no_mismatch() {
    let out = Command::new(FERRY)
        .args([
            "demo",
            "--rows",
            "3000",
            // Short: nothing below depends on it. After the cutover the demo itself runs the
            // workload until target served the reads its report states (asserted below).
            "--duration",
            "1s",
            "--rate",
            "300",
            "--bind",
            "127.0.156.1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "[1/8]",
        "[5/8]",
        "[8/8]",
        "loaded 3000 rows",
        "ferry_demo.page_views",
        "primary target (was origin)",
        "MISMATCHES        0 (validation:",
        "migration complete, 0 mismatches",
        "proxy (CQL)            127.0.156.1:",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    // Every table was copied, the workload wrote through the proxy to both clusters and read
    // from target after the cutover.
    assert_eq!(stdout.matches("  DONE  ").count(), 5, "{stdout}");
    let number_after = |label: &str| -> u64 {
        let line = stdout.lines().find(|l| l.contains(label)).unwrap();
        let rest = &line[line.find(label).unwrap() + label.len()..];
        let word = rest.split_whitespace().next().unwrap();
        word.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or_else(|e| panic!("{label} {word:?}: {e}"))
    };
    assert!(number_after("dual writes") > 0, "{stdout}");
    // "N reads served by target (the workload ran until at least M)": M > 0, and N ≥ M by
    // construction, however slow the machine.
    let awaited = number_after("until at least");
    assert!(awaited > 0, "{stdout}");
    assert!(number_after("after cutover") >= awaited, "{stdout}");
    // Zero downtime: no operation of the workload failed, the cutover included.
    let workload = stdout
        .lines()
        .find(|l| l.contains("  workload   "))
        .unwrap();
    assert!(workload.contains(" reads, 0 errors"), "{workload}");
}
