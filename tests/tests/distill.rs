//! `tools distill` with the real binaries on the shipped demo data: a demo teacher is
//! distilled into a fresh tiny student, whose checkpoint then quantises/exports and
//! evaluates like any other, or into a pretrained MiniLM student (`--init`, when the
//! checkpoint has been fetched); labels the teacher does not know are a clear error.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use e2e::{minilm_checkpoint, repo_root, run_err, run_ok, sha256_file};
use serde_json::Value;

/// One demo teacher shared by the tests of this file (trained once).
fn teacher() -> &'static Path {
    static TEACHER: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &TEACHER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let ckpt = dir.path().join("teacher");
            run_ok(
                "tools",
                &[
                    "train",
                    "--train",
                    "models/demo/train.csv",
                    "--out",
                    ckpt.to_str().unwrap(),
                    "--epochs",
                    "12",
                    "--quiet",
                ],
                None,
            );
            (dir, ckpt)
        })
        .1
}

fn accuracy(model: &Path) -> f64 {
    let report: Value = serde_json::from_str(&run_ok(
        "tools",
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            "models/demo/test.csv",
            "--json",
        ],
        None,
    ))
    .unwrap();
    report["accuracy"].as_f64().unwrap()
}

#[test]
fn demo_teacher_distils_into_a_student_that_exports_and_evaluates() {
    let teacher = teacher();
    let dir = tempfile::tempdir().unwrap();
    let student = dir.path().join("student");
    let bundle = dir.path().join("bundle");
    let summary: Value = serde_json::from_str(&run_ok(
        "tools",
        &[
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--student-preset",
            "tiny",
            "--train",
            "models/demo/train.csv",
            "--out",
            student.to_str().unwrap(),
            "--epochs",
            "10",
            "--temperature",
            "3",
            "--alpha",
            "0.7",
            "--augment",
            "1",
            "--vocab-size",
            "1000",
            "--quiet",
            "--json",
        ],
        None,
    ))
    .unwrap();

    // An ordinary checkpoint, with the distillation recorded.
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "training.json",
        "training_log.csv",
        "training_curves.svg",
    ] {
        assert!(student.join(f).is_file(), "student checkpoint lacks {f}");
    }
    let training: Value =
        serde_json::from_str(&std::fs::read_to_string(student.join("training.json")).unwrap())
            .unwrap();
    assert_eq!(training, summary);
    let d = &training["distillation"];
    assert_eq!(
        d["teacher_sha256"].as_str().unwrap(),
        sha256_file(&teacher.join("model.safetensors"))
    );
    assert_eq!(d["temperature"], 3.0);
    assert_eq!(d["alpha"], 0.7);
    assert_eq!(d["tokenizer"], "student");
    assert_eq!(training["options"]["distill"]["alpha"], 0.7);
    let originals = training["train_examples"].as_u64().unwrap();
    assert!(originals > 700, "{originals}");
    assert_eq!(d["training_rows"].as_u64().unwrap(), 2 * originals);
    assert!(d["teacher_val_accuracy"].as_f64().unwrap() > 0.5, "{d}");
    // The student trained its own, smaller vocabulary.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(student.join("config.json")).unwrap())
            .unwrap();
    assert!(config["vocab_size"].as_u64().unwrap() <= 1000, "{config}");
    assert_ne!(
        std::fs::read(student.join("tokenizer.json")).unwrap(),
        std::fs::read(teacher.join("tokenizer.json")).unwrap()
    );

    // Exports (checked against the device engine) and evaluates like any checkpoint.
    let export: Value = serde_json::from_str(&run_ok(
        "tools",
        &[
            "export",
            "--model",
            student.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert!(export["checked"].as_u64().unwrap() > 0);
    assert!(export["max_logit_diff"].as_f64().unwrap() <= 1e-4);
    let (student_acc, teacher_acc) = (accuracy(&bundle), accuracy(teacher));
    // 15 classes: chance is 0.07; the demo teacher reaches about 0.8.
    assert!(
        student_acc > 0.6,
        "student {student_acc} (teacher {teacher_acc})"
    );
}

#[test]
fn student_can_reuse_the_teacher_tokenizer() {
    let teacher = teacher();
    let dir = tempfile::tempdir().unwrap();
    let student = dir.path().join("student");
    run_ok(
        "tools",
        &[
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--train",
            "models/demo/train.csv",
            "--out",
            student.to_str().unwrap(),
            "--tokenizer",
            "teacher",
            "--epochs",
            "2",
            "--quiet",
        ],
        None,
    );
    assert_eq!(
        std::fs::read(student.join("tokenizer.json")).unwrap(),
        std::fs::read(teacher.join("tokenizer.json")).unwrap()
    );
    let vocab = |dir: &Path| -> u64 {
        let c: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        c["vocab_size"].as_u64().unwrap()
    };
    assert_eq!(vocab(&student), vocab(teacher));

    // `teacher-pruned`: the teacher's vocabulary cut to the tokens the texts use.
    let pruned = dir.path().join("pruned");
    run_ok(
        "tools",
        &[
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--train",
            "models/demo/train.csv",
            "--out",
            pruned.to_str().unwrap(),
            "--tokenizer",
            "teacher-pruned",
            "--teacher-embeddings",
            "--epochs",
            "2",
            "--quiet",
        ],
        None,
    );
    assert!(
        vocab(&pruned) < vocab(teacher),
        "{} vs {}",
        vocab(&pruned),
        vocab(teacher)
    );
    let training: Value =
        serde_json::from_str(&std::fs::read_to_string(pruned.join("training.json")).unwrap())
            .unwrap();
    assert_eq!(training["distillation"]["tokenizer"], "teacher-pruned");
    // --teacher-embeddings: every pruned token is the teacher's, so every row transferred.
    let t = &training["distillation"]["teacher_embeddings"];
    assert_eq!(t["rows"].as_u64(), Some(vocab(&pruned)), "{t}");
    let teacher_hidden: Value =
        serde_json::from_str(&std::fs::read_to_string(teacher.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(t["from_dim"], teacher_hidden["hidden"], "{t}");
    assert!(accuracy(&pruned) > 0.0);
}

#[test]
fn a_pretrained_student_starts_from_the_encoder_and_learns_from_the_teacher() {
    let Some(init) = minilm_checkpoint() else {
        return;
    };
    let init = init.to_str().unwrap();
    let teacher = teacher();
    let dir = tempfile::tempdir().unwrap();
    let student = dir.path().join("student");
    let base = [
        "distill",
        "--teacher",
        teacher.to_str().unwrap(),
        "--init",
        init,
        "--train",
        "models/demo/train.csv",
        "--out",
        student.to_str().unwrap(),
        "--quiet",
    ];
    let distill = |extra: &[&'static str]| [&base[..], extra].concat();
    // A pretrained encoder brings its own tokenizer and word vectors.
    let err = run_err("tools", &distill(&["--tokenizer", "teacher"]), None);
    assert!(err.contains("brings its own tokenizer"), "{err}");
    let err = run_err("tools", &distill(&["--teacher-embeddings"]), None);
    assert!(err.contains("--teacher-embeddings"), "{err}");
    let err = run_err("tools", &distill(&["--layers", "2"]), None);
    assert!(err.contains("cannot change a pretrained encoder"), "{err}");
    assert!(!student.exists(), "nothing is written on a refused job");

    let summary: Value = serde_json::from_str(&run_ok(
        "tools",
        &distill(&[
            "--epochs",
            "1",
            "--augment",
            "1",
            "--alpha",
            "0.7",
            "--freeze-embeddings",
            "--json",
        ]),
        None,
    ))
    .unwrap();
    // The student is MiniLM (its sizes, vocabulary and encoder weights), the head fresh,
    // taught on the originals and one teacher-labelled copy of each.
    assert_eq!(summary["init"]["loaded"].as_array().unwrap().len(), 100);
    assert_eq!(summary["init"]["fresh"].as_array().unwrap().len(), 5);
    assert_eq!(summary["preset"]["name"], "minilm");
    assert_eq!(summary["options"]["freeze_embeddings"], true);
    let originals = summary["train_examples"].as_u64().unwrap();
    assert_eq!(
        summary["distillation"]["training_rows"].as_u64().unwrap(),
        2 * originals
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(student.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["hidden"], 384);
    assert_eq!(config["layers"], 6);
    assert_eq!(config["vocab_size"], 30522);
    // One epoch from the pretrained encoder already separates the 15 demo intents well
    // above chance (1/15), as `tools train --init` does.
    let val_acc = summary["outcome"]["best_val_accuracy"].as_f64().unwrap();
    assert!(val_acc > 0.4, "validation accuracy {val_acc}");
}

#[test]
fn labels_the_teacher_does_not_know_are_a_clear_error() {
    let teacher = teacher();
    let dir = tempfile::tempdir().unwrap();
    let mut data = std::fs::read_to_string(repo_root().join("models/demo/train.csv")).unwrap();
    data += "order me a pizza with extra cheese,order_pizza\n";
    data += "book a table for two tonight,book_table\n";
    let path = dir.path().join("train.csv");
    std::fs::write(&path, data).unwrap();
    let out = dir.path().join("student");
    let err = run_err(
        "tools",
        &[
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--train",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
        None,
    );
    assert!(
        err.contains("book_table, order_pizza") && err.contains("teacher"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written on a label mismatch");
}
