//! Done-when figure: `tools bench` over a pseudo-terminal with ≥ 1,000 queries from
//! SNIPS (../shared/data/snips/test.csv, 700 rows, cycled) gets every answer, and its
//! accuracy equals `tools eval` on the same bundle (1,400 queries = exactly two passes).

mod link_support;

use e2e::shared_data;
use link_support::{bench_json, eval_accuracy, Relay, Serve};

#[test]
fn link_bench_snips_1400_queries_over_pty() {
    let Some(snips) = shared_data("snips") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A quick one-epoch tiny model: the test is about the link, not the accuracy.
    let bundle = e2e::train_bundle(dir.path(), &snips.join("train.csv"), 1);
    let test = snips.join("test.csv");
    let rows = e2e::csv_texts_and_labels(&test).len();
    assert_eq!(rows, 700);

    let relay = Relay::new(7);
    let _serve = Serve::start(&bundle, relay.device_path(), &[]);
    let v = bench_json(&[
        "--serial",
        &relay.host_path,
        "--data",
        test.to_str().unwrap(),
        "-n",
        "1400",
        "--concurrency",
        "4",
        "--histogram",
        dir.path().join("latency.svg").to_str().unwrap(),
    ]);
    println!(
        "SNIPS over pty: n {} answered {} accuracy {} rtt p50 {} µs p99 {} µs, device p50 {} µs p99 {} µs, {:.0} queries/s",
        v["n"], v["answered"], v["accuracy"], v["rtt_p50_us"], v["rtt_p99_us"],
        v["device_p50_us"], v["device_p99_us"], v["throughput_per_s"].as_f64().unwrap()
    );
    assert_eq!(v["n"], 1400);
    assert_eq!(v["answered"], 1400, "{v}");
    assert_eq!(v["errors"], 0);
    let eval = eval_accuracy(&bundle, &test, dir.path());
    assert_eq!(
        v["accuracy"].as_f64().unwrap(),
        eval,
        "bench over the link = tools eval"
    );
    assert!(v["rtt_p99_us"].as_u64().unwrap() >= v["rtt_p50_us"].as_u64().unwrap());
}
