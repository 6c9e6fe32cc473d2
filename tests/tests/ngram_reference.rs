//! `tools/scripts/ngram_ids.py`, the n-gram recipe in Python (what feeds `ngram_ids` to
//! onnxruntime), gives the ids `device::ngrams` gives: on every text of the demo data,
//! English and Chinese, and on tricky strings (accents composed and decomposed, 'İ', final
//! sigma, '²' '½', emoji, CJK mixed with Latin, fullwidth letters, Indic vowel signs, the
//! empty text), for several table sizes; and its two character functions equal Rust's
//! `char::is_alphanumeric` and `char::to_lowercase` on every code point (when Rust's
//! Unicode version moves, that test prints the script's new tables).
//!
//! Needs python3 (>= 3.11 for the code point test) and numpy for the padded rows; skips
//! with one line when they are missing.

use std::io::Write;
use std::process::{Command, Stdio};

use bundle::NgramSpec;
use device::ngrams;
use e2e::{csv_texts_and_labels, repo_root};

const SCRIPT: &str = "tools/scripts/ngram_ids.py";

/// Strings where Python's and Rust's string handling could part.
const TRICKY: &[&str] = &[
    "",
    "  ?! ",
    "Café crème brûlée, naïve façade",
    "Cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e",
    "İstanbul İİ ıI iİ",
    "ΟΔΟΣ ΣΊΣΥΦΟΣ σοφός Σ",
    "x² ½ ¾ Ⅻ ⅻ ① ⑩ 10⁶ ³⁄₄ ٣٤ ๓",
    "🙂 👍🏽 emoji 🇫🇷 ok👌 ❤️ 👨‍👩‍👧",
    "打开客厅的灯abc谢谢123 把temperature调到22度",
    "Ｈｅｌｌｏ ＷＯＲＬＤ １２３ ｶﾀｶﾅ",
    "Ⓐⓑ 🄰🅐 ⒜",
    "हिंदी में बात करो, हिन्दी नमस्ते",
    "ภาษาไทย ง่าย",
    "مَرْحَبًا بالعالم",
    "שָׁלוֹם",
    "ǅemal ǈ ß ẞ ŉ ﬁ ﬀ",
    "a\u{200d}b zero\u{200b}width \u{feff}bom a\u{0}b",
    "tab\there\u{2028}line\u{85}next\rcr\u{b}vt\u{c}ff",
    "pneumonoultramicroscopicsilicovolcanoconiosis and more",
    "İİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİ",
    "一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十",
    "mp3 4k 6:30pm don't can’t e-mail user@example.com",
    "the the the kitchen lights in the kitchen",
    "東京タワーに行きたい 안녕하세요 세계",
    "Ꞔ Ɤ \u{a7cb}\u{a7dc} \u{31350}\u{2ebf0} \u{10d50}",
];

/// The n-gram tables the ids are compared under.
const SPECS: &[NgramSpec] = &[
    NgramSpec {
        buckets: 4096,
        max: 64,
    },
    NgramSpec {
        buckets: 65_536,
        max: 256,
    },
    NgramSpec {
        buckets: 1 << 24,
        max: 4096,
    },
    NgramSpec { buckets: 2, max: 3 },
];

/// Whether `python3 -c code` runs; otherwise prints why the test is skipped.
fn python_has(code: &str, what: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", code])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipped: {what}");
    }
    ok
}

/// Runs `python3 SCRIPT args` with `stdin`; returns stdout.
fn script(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_owned();
    // Written from a thread: the script's output can outgrow the pipe before it has read all.
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{SCRIPT} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 from the script")
}

fn texts() -> Vec<String> {
    let mut texts = Vec::new();
    for f in ["models/demo/train.csv", "models/demo/test.csv"] {
        let rows = csv_texts_and_labels(&repo_root().join(f));
        assert!(rows.len() > 100, "{f}: {} rows", rows.len());
        texts.extend(rows.into_iter().map(|(t, _)| t));
    }
    assert!(texts
        .iter()
        .any(|t| t.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))));
    texts.extend(TRICKY.iter().map(|s| s.to_string()));
    // One text per line for the script.
    assert!(texts.iter().all(|t| !t.contains('\n')));
    texts
}

#[test]
fn python_ids_equal_the_devices_on_demo_and_tricky_texts() {
    if !python_has("", "ngram_ids.py reference needs python3") {
        return;
    }
    let texts = texts();
    let stdin: String = texts.iter().map(|t| format!("{t}\n")).collect();
    for spec in SPECS {
        let args = [
            "--buckets".to_string(),
            spec.buckets.to_string(),
            "--max".to_string(),
            spec.max.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = script(&args, &stdin);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.len(),
            texts.len(),
            "{SCRIPT} {args:?}: one line per text"
        );
        let mut nonempty = 0;
        for (text, line) in texts.iter().zip(&lines) {
            let python: Vec<i64> = serde_json::from_str(line).expect("a JSON list of ids");
            let rust = ngrams::ngram_ids(text, spec);
            assert!(
                python == rust,
                "{spec:?}: the ids differ for the text {text:?}\n  words (Rust): {:?}\n  Rust:   {rust:?}\n  Python: {python:?}",
                ngrams::words(text)
            );
            nonempty += usize::from(!rust.is_empty());
        }
        // Empty and punctuation-only texts aside, every text has ids.
        assert!(
            nonempty >= texts.len() - 2,
            "{spec:?}: {nonempty} of {}",
            texts.len()
        );
    }
}

#[test]
fn python_padded_rows_equal_the_devices() {
    if !python_has(
        "import numpy",
        "ngram_ids.py padded() needs python3 with numpy",
    ) {
        return;
    }
    let spec = NgramSpec {
        buckets: 4096,
        max: 16,
    };
    let texts = ["Turn ON the lights!", "", "打开客厅的灯，谢谢", TRICKY[4]];
    let code = format!(
        "import json, sys; sys.path.insert(0, 'tools/scripts'); from ngram_ids import padded\n\
         texts = json.loads(sys.stdin.read())\n\
         a = padded(texts, {}, {})\n\
         assert a.dtype.name == 'int64' and a.shape == (len(texts), {}), (a.dtype, a.shape)\n\
         print(json.dumps(a.ravel().tolist()))\n\
         print(json.dumps(padded([[4, 5], [1, 2, 3, 9]], None, 3).ravel().tolist()))",
        spec.buckets, spec.max, spec.max
    );
    let mut child = Command::new("python3")
        .args(["-c", &code])
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&texts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let mut lines = out.lines();
    let python: Vec<i64> = serde_json::from_str(lines.next().unwrap()).unwrap();
    let rows: Vec<Vec<i64>> = texts.iter().map(|t| ngrams::ngram_ids(t, &spec)).collect();
    assert_eq!(python, ngrams::padded(&rows, &spec));
    let ids: Vec<i64> = serde_json::from_str(lines.next().unwrap()).unwrap();
    let small = NgramSpec {
        buckets: 10,
        max: 3,
    };
    assert_eq!(ids, ngrams::padded(&[vec![4, 5], vec![1, 2, 3, 9]], &small));
}

/// `[first, last]` runs of the code points where `f` holds.
fn ranges(f: impl Fn(u32) -> bool) -> Vec<[u32; 2]> {
    let mut out: Vec<[u32; 2]> = Vec::new();
    for u in (0..=0x10_FFFF).filter(|&u| f(u)) {
        match out.last_mut() {
            Some(r) if r[1] + 1 == u => r[1] = u,
            _ => out.push([u, u]),
        }
    }
    out
}

fn contains(ranges: &[[u32; 2]], u: u32) -> bool {
    let i = ranges.partition_point(|r| r[0] <= u);
    i > 0 && u <= ranges[i - 1][1]
}

/// Code point -> lowercase, for the pairs `[[u, "s"], ...]` of the script's table.
fn lower_map(v: &serde_json::Value) -> std::collections::BTreeMap<u32, String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_u64().unwrap() as u32,
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn python_character_functions_equal_rusts_on_every_code_point() {
    if !python_has(
        "import sys; assert sys.version_info >= (3, 11)",
        "ngram_ids.py code point check needs python3 >= 3.11 (its tables start at Unicode 14.0)",
    ) {
        return;
    }
    let table: serde_json::Value =
        serde_json::from_str(&script(&["--unicode-table"], "")).expect("JSON table");
    let parse = |key: &str| -> Vec<[u32; 2]> {
        serde_json::from_value(table[key].clone()).unwrap_or_else(|e| panic!("{key}: {e}"))
    };
    let (alnum, isalnum) = (parse("alnum"), parse("isalnum"));
    let (lower, str_lower) = (lower_map(&table["lower"]), lower_map(&table["str_lower"]));
    let rust_lower = |c: char| -> Option<String> {
        let l: String = c.to_lowercase().collect();
        (l != c.to_string()).then_some(l)
    };

    let mut differ = Vec::new();
    for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
        let u = c as u32;
        if c.is_alphanumeric() != contains(&alnum, u) {
            differ.push(format!(
                "U+{u:04X} {c:?}: is_alphanumeric {} in Rust",
                c.is_alphanumeric()
            ));
        }
        if rust_lower(c).as_ref() != lower.get(&u) {
            differ.push(format!(
                "U+{u:04X} {c:?}: lowercase {:?} in Rust, {:?} in Python",
                rust_lower(c),
                lower.get(&u)
            ));
        }
    }
    if differ.is_empty() {
        return;
    }
    // The script's tables as they should read for this Rust and this Python.
    let extra =
        ranges(|u| char::from_u32(u).is_some_and(char::is_alphanumeric) && !contains(&isalnum, u));
    let extra: Vec<String> = extra
        .iter()
        .map(|r| format!("(0x{:04X}, 0x{:04X})", r[0], r[1]))
        .collect();
    let mut offsets: Vec<(u32, u32, i64)> = Vec::new();
    let mut multi = Vec::new();
    for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
        let u = c as u32;
        let rust = rust_lower(c);
        if rust.as_ref() == str_lower.get(&u) {
            continue;
        }
        let l = rust.unwrap_or_else(|| c.to_string());
        let mut cs = l.chars();
        match (cs.next(), cs.next()) {
            (Some(one), None) => {
                let off = i64::from(one as u32) - i64::from(u);
                match offsets.last_mut() {
                    Some(r) if r.1 + 1 == u && r.2 == off => r.1 = u,
                    _ => offsets.push((u, u, off)),
                }
            }
            _ => multi.push(format!("U+{u:04X} -> {l:?}")),
        }
    }
    let offsets: Vec<String> = offsets
        .iter()
        .map(|(a, b, d)| format!("(0x{a:04X}, 0x{b:04X}, {d:+})"))
        .collect();
    panic!(
        "{SCRIPT} (Python's Unicode {}) differs from Rust's char functions at {} code points, e.g.\n  {}\n\
         Its tables for this Rust:\n_EXTRA_ALNUM = (\n    {},\n)\n_LOWER_AFTER_14 = (\n    {},\n)\n{}",
        table["unicode"],
        differ.len(),
        differ.iter().take(20).cloned().collect::<Vec<_>>().join("\n  "),
        extra.join(", "),
        offsets.join(", "),
        if multi.is_empty() {
            String::new()
        } else {
            format!("(and lowercase to several characters, which the table cannot hold: {multi:?})")
        }
    );
}
