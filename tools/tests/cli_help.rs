//! The command line documents itself: every subcommand answers `--help`, and every flag
//! it lists carries a description (ripgrep's rule: nothing undocumented in `--help`).
//!
//! Having an integration test here also makes `cargo test --workspace` build the `tools`
//! binary that the end-to-end tests in `tests/` run.

use std::process::Command;

const TOOLS: &str = env!("CARGO_BIN_EXE_tools");

fn help(args: &[&str]) -> String {
    let out = Command::new(TOOLS)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "tools {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Subcommand names from the top-level help's "Commands:" section.
fn subcommands() -> Vec<String> {
    let text = help(&[]);
    let section = text
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .split("Options:")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_subcommand_is_listed() {
    let names = subcommands();
    for expected in [
        "train",
        "distill",
        "eval",
        "calibrate",
        "export",
        "quantize",
        "keygen",
        "sign",
        "deploy",
        "classify",
        "monitor",
        "bench",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
}

#[test]
fn every_flag_is_documented() {
    for name in subcommands() {
        let text = help(&[&name]);
        let options = text.split("Options:").nth(1).unwrap_or("");
        let lines: Vec<&str> = options.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            // A flag line starts `-x` or `--name`; `- value: …` lines list possible values.
            if !trimmed.starts_with('-') || trimmed.starts_with("- ") {
                continue;
            }
            // clap puts the description after two spaces on the same line, or on the
            // following indented line(s).
            let flag = trimmed.split_whitespace().next().unwrap();
            let same_line = trimmed.split("  ").filter(|s| !s.trim().is_empty()).count() > 1;
            let next_line = lines
                .get(i + 1)
                .map(|l| {
                    let t = l.trim_start();
                    !t.is_empty() && !t.starts_with('-')
                })
                .unwrap_or(false);
            assert!(
                same_line || next_line,
                "tools {name}: flag {flag} has no description:\n{text}"
            );
        }
    }
}

#[test]
fn unknown_flag_is_a_clear_error_not_a_panic() {
    let out = Command::new(TOOLS)
        .args(["train", "--no-such-flag"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-flag"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
