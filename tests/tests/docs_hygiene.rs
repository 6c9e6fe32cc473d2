//! The project's pages speak of the project (issue #28): no work-log numbering, a README
//! that stays a front page, no page pasted into another, and no `runs/…` path that none of
//! the documented commands creates. Cheap text checks over README.md, docs/ and the
//! sources; they fail naming the file and line.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use e2e::repo_root;

/// Every file under `dir` (recursively) whose extension is one of `exts`, skipping build
/// output, vendored code and local work folders.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | "third_party" | "runs" | ".git" | ".cache" | "node_modules"
            ) {
                files(&p, exts, out);
            }
        } else if p
            .extension()
            .is_some_and(|x| exts.contains(&x.to_string_lossy().as_ref()))
        {
            out.push(p);
        }
    }
}

fn pages() -> Vec<PathBuf> {
    let root = repo_root();
    let mut v = vec![root.join("README.md")];
    files(&root.join("docs"), &["md"], &mut v);
    v.sort();
    v
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// The work log's word, spelled once: [`has_work_log_number`] looks for it followed by an
/// optional plural `s`, an optional space and a digit.
const WORD: &str = "session";

/// Whether `line` numbers the work log ([`WORD`], then a number).
fn has_work_log_number(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    let b = lower.as_bytes();
    let mut from = 0;
    while let Some(i) = lower[from..].find(WORD) {
        let mut j = from + i + WORD.len();
        if b.get(j) == Some(&b's') {
            j += 1;
        }
        if b.get(j) == Some(&b' ') {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            return true;
        }
        from = from + i + 1;
    }
    false
}

#[test]
fn no_work_log_numbering_anywhere() {
    let root = repo_root();
    let mut all = Vec::new();
    files(
        &root,
        &["md", "rs", "py", "sh", "toml", "c", "service", "txt"],
        &mut all,
    );
    let mut found = Vec::new();
    for f in &all {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if has_work_log_number(line) {
                found.push(format!("{}:{}: {}", rel(f), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "work-log numbering:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_pattern_is_recognised() {
    let capital = format!("S{}", &WORD[1..]);
    assert!(has_work_log_number(&format!("measured in {WORD} 12")));
    assert!(has_work_log_number(&format!("{capital}s 3-4")));
    assert!(has_work_log_number(&format!("{WORD}12")));
    assert!(!has_work_log_number(&format!("a serial {WORD}: 3 frames")));
    assert!(!has_work_log_number(&format!("{WORD}s of the link")));
}

#[test]
fn the_readme_is_a_front_page() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let n = readme.lines().count();
    assert!(
        n <= 150,
        "README.md has {n} lines; keep it ≤ 150 and move detail to docs/"
    );
}

#[test]
fn no_two_pages_share_ten_identical_lines() {
    const RUN: usize = 10;
    let mut first_seen: HashMap<Vec<String>, (String, usize)> = HashMap::new();
    let mut shared = Vec::new();
    for page in pages() {
        let text = fs::read_to_string(&page).unwrap();
        let lines: Vec<(usize, String)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim().to_string()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        for w in lines.windows(RUN) {
            let key: Vec<String> = w.iter().map(|(_, l)| l.clone()).collect();
            match first_seen.get(&key) {
                Some((other, at)) if *other != rel(&page) => shared.push(format!(
                    "{}:{} repeats {}:{}",
                    rel(&page),
                    w[0].0,
                    other,
                    at
                )),
                Some(_) => {}
                None => {
                    first_seen.insert(key, (rel(&page), w[0].0));
                }
            }
        }
    }
    assert!(
        shared.is_empty(),
        "pages sharing {RUN} identical lines:\n{}",
        shared.join("\n")
    );
}

/// `runs/a/b` → `runs/a/b` without trailing punctuation of the sentence around it.
fn run_paths(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("runs/") {
        let start = from + i;
        let preceded_by_word = text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
            .map_or(text.len(), |e| start + e);
        let path = text[start..end].trim_end_matches(['.', '/']);
        if !preceded_by_word && path.len() > "runs/".len() {
            v.push(path.to_string());
        }
        from = end.max(start + 1);
    }
    v
}

#[test]
fn every_runs_path_in_the_docs_is_made_by_a_documented_command() {
    // What creates a folder under runs/: an output flag of a documented command, or a
    // script's own working folder (demo.sh, accuracy.py, perf.py …), named in its source.
    let root = repo_root();
    let mut makers: BTreeSet<String> = BTreeSet::new();
    for page in pages() {
        let text = fs::read_to_string(&page).unwrap();
        for flag in ["--out ", "--out=", "--work ", "--work="] {
            for (i, _) in text.match_indices(flag) {
                let after = &text[i + flag.len()..];
                if after.starts_with("runs/") {
                    makers.extend(run_paths(after).into_iter().take(1));
                }
            }
        }
    }
    let mut scripts = Vec::new();
    files(&root.join("tools"), &["py", "sh"], &mut scripts);
    for s in &scripts {
        makers.extend(run_paths(&fs::read_to_string(s).unwrap_or_default()));
    }
    let made = |p: &str| {
        makers.iter().any(|m| {
            p == m
                || p.starts_with(&format!("{m}/"))
                || p.starts_with(&format!("{m}."))
                || (m.starts_with(&format!("{p}/")))
        })
    };
    let mut orphans = Vec::new();
    for page in pages() {
        let text = fs::read_to_string(&page).unwrap();
        for (n, line) in text.lines().enumerate() {
            for p in run_paths(line) {
                if !made(&p) {
                    orphans.push(format!("{}:{}: {p}", rel(&page), n + 1));
                }
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "runs/ paths no documented command creates:\n{}",
        orphans.join("\n")
    );
}
