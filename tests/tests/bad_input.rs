//! Every kind of bad input gets a clear error naming what and where, and no panic.

use e2e::{run, run_err, run_ok};

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

fn train_err(data: &str, extra: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("ckpt");
    let mut args = vec![
        "train",
        "--train",
        data,
        "--out",
        o.to_str().unwrap(),
        "--epochs",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    run_err("tools", &args, None)
}

fn good_rows() -> String {
    let mut s = String::from("text,label\n");
    for i in 0..20 {
        s += &format!("turn on light {i},on\nturn off light {i},off\n");
    }
    s
}

#[test]
fn missing_column_is_named() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.csv", b"utterance,label\nhello,greet\n");
    let e = train_err(&f, &[]);
    assert!(
        e.contains("a.csv:1: missing column 'text' (header has: utterance, label)"),
        "{e}"
    );
    // The column flags fix it.
    let f2 = write(
        d.path(),
        "b.csv",
        good_rows()
            .replace("text,label", "utterance,intent")
            .as_bytes(),
    );
    let e = train_err(&f2, &["--text-col", "utterance", "--label-col", "nope"]);
    assert!(e.contains("missing column 'nope'"), "{e}");
}

#[test]
fn empty_text_names_the_line() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "a.csv",
        b"text,label\nhello,greet\n  ,greet\nbye,leave\n",
    );
    let e = train_err(&f, &[]);
    assert!(e.contains("a.csv:3: empty text"), "{e}");
}

#[test]
fn invalid_utf8_names_the_line() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "a.csv",
        b"text,label\nhello,greet\nbad \xff\xfe byte,greet\n",
    );
    let e = train_err(&f, &[]);
    assert!(e.contains("a.csv:3: invalid UTF-8"), "{e}");
    let j = write(
        d.path(),
        "a.jsonl",
        b"{\"text\":\"ok\",\"label\":\"a\"}\n{\"text\":\"\xc3\x28\",\"label\":\"b\"}\n",
    );
    let e = train_err(&j, &[]);
    assert!(e.contains("a.jsonl:2: invalid UTF-8"), "{e}");
}

#[test]
fn jsonl_problems_name_the_line() {
    let d = tempfile::tempdir().unwrap();
    let j = write(
        d.path(),
        "a.jsonl",
        b"{\"text\":\"ok\",\"label\":\"a\"}\n{\"text\":\"no label\"}\n",
    );
    assert!(train_err(&j, &[]).contains("a.jsonl:2: missing field 'label'"));
    let j = write(
        d.path(),
        "b.jsonl",
        b"{\"text\":\"ok\",\"label\":\"a\"}\nnot json\n",
    );
    assert!(train_err(&j, &[]).contains("b.jsonl:2: invalid JSON"));
}

#[test]
fn ragged_csv_row_names_the_line() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "a.csv",
        b"text,label\nhello,greet\nhello,greet,extra\n",
    );
    let e = train_err(&f, &[]);
    assert!(e.contains("a.csv:3: expected 2 fields, found 3"), "{e}");
}

#[test]
fn fewer_than_two_classes() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.csv", b"text,label\nhello,greet\nhi,greet\n");
    let e = train_err(&f, &[]);
    assert!(e.contains("a.csv: fewer than 2 classes (greet)"), "{e}");
}

#[test]
fn label_only_in_validation_or_test() {
    let d = tempfile::tempdir().unwrap();
    let train = write(d.path(), "train.csv", good_rows().as_bytes());
    let val = write(
        d.path(),
        "val.csv",
        b"text,label\nturn on,on\ndim the lights,dim\n",
    );
    let e = train_err(&train, &["--val", &val]);
    assert!(
        e.contains("val.csv:3: label 'dim' does not occur in the training data (2 labels)"),
        "{e}"
    );

    // tools eval: a test label the model never saw.
    let ckpt = d.path().join("ckpt");
    run_ok(
        "tools",
        &[
            "train",
            "--train",
            &train,
            "--out",
            ckpt.to_str().unwrap(),
            "--epochs",
            "1",
            "--quiet",
            "--vocab-size",
            "60",
        ],
        None,
    );
    let e = run_err(
        "tools",
        &["eval", "--model", ckpt.to_str().unwrap(), "--data", &val],
        None,
    );
    assert!(
        e.contains("val.csv:3: label 'dim' does not occur in the training data"),
        "{e}"
    );
}

#[test]
fn unknown_format_preset_and_missing_file() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "a.txt", b"x");
    assert!(train_err(&f, &[]).contains("a.txt: unknown format"));
    let csv = write(d.path(), "a.csv", good_rows().as_bytes());
    assert!(train_err(&csv, &["--preset", "huge"]).contains("unknown preset 'huge'"));
    assert!(train_err(&csv, &["--heads", "3"]).contains("not divisible by heads 3"));
    let e = train_err("/nonexistent/data.csv", &[]);
    assert!(
        e.contains("/nonexistent/data.csv") && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn eval_on_a_directory_that_is_no_model() {
    let d = tempfile::tempdir().unwrap();
    let csv = write(d.path(), "a.csv", good_rows().as_bytes());
    let e = run_err(
        "tools",
        &[
            "eval",
            "--model",
            d.path().to_str().unwrap(),
            "--data",
            &csv,
        ],
        None,
    );
    assert!(e.contains("neither a checkpoint"), "{e}");
}

#[test]
fn bad_flags_are_refused_by_clap() {
    let out = run(
        "tools",
        &[
            "train", "--train", "x.csv", "--out", "o", "--epochs", "many",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid value 'many' for '--epochs <N>'")
    );
}
