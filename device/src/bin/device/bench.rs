//! `device bench-latency` (hidden): per-query latency of bundles and variants, measured
//! interleaved in one process, printed as JSON lines for `tools/benchmarks/perf.py`.
//!
//! Query sets come from a text file (one text per line, or a CSV with a `text` column):
//! `short` = texts of at most `--short-max` tokens; `long` = consecutive texts joined until
//! they fill `--long` tokens (then truncated to it). For every configuration (bundle ×
//! variant × plan mode) and set, each round times every query three ways: end to end
//! (`Classifier::classify`: tokenise + run + softmax + ranking), tokeniser alone, and
//! model alone (`Engine::run_batch` on the pre-encoded inputs). Rounds interleave the
//! configurations so a busy machine hurts them alike.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use device::engine::EngineOptions;
use device::variant::Choice;
use device::{Batch, Bundle, Classifier, Engine, TextEncoder, VerifiedBundle};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Bundle directory; repeatable (sha256 checked, signatures not).
    #[arg(long, value_name = "DIR", required = true)]
    bundle: Vec<PathBuf>,

    /// Query texts: one per line, or a CSV whose header has a `text` column.
    #[arg(long, value_name = "FILE")]
    texts: PathBuf,

    /// Variants to time (default: every variant of each bundle).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    variants: Vec<String>,

    /// Plan modes: `buckets` (the default engine: per length bucket, the fixed-length plan
    /// or the symbolic plan, whichever won their race on this CPU), `fixed` (every bucket
    /// on its fixed-length plan), `symbolic` (one plan with symbolic batch/seq), `baseline`
    /// (symbolic plan, tract's own
    /// LayerNorm and Softmax, and the `tokenizers` library without the ASCII fast path: the
    /// engine before issue #7).
    #[arg(long, value_delimiter = ',', default_value = "buckets")]
    modes: Vec<String>,

    /// Queries per set.
    #[arg(long, default_value_t = 200)]
    queries: usize,

    /// Interleaved rounds (each times every query of every configuration once).
    #[arg(long, default_value_t = 5)]
    rounds: usize,

    /// Longest text (tokens, [CLS]/[SEP] included) of the short set.
    #[arg(long, default_value_t = 16)]
    short_max: usize,

    /// Token count of the long set.
    #[arg(long, default_value_t = 64)]
    long: usize,

    /// Write the query sets (text and ids per query, per bundle) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    dump_queries: Option<PathBuf>,

    /// Print tract's per-node profile (µs per query) of the first short and long query
    /// of each configuration instead of timing.
    #[arg(long)]
    profile: bool,

    /// With --profile: how many of the slowest nodes to list (the rest are summed on one line).
    #[arg(long, default_value_t = 25, value_name = "N")]
    profile_nodes: usize,

    /// Instead of timing, check that every fixed-length plan (with the fused kernels,
    /// whichever plan would win its race) and the symbolic plan with the fused kernels give
    /// the labels and probabilities of the symbolic plan with tract's own ops (≤ 1e-5; ≤ 2e-2 for int8-compute, whose
    /// run-time activation rounding depends on summation order) on every text of the file
    /// and the long set; exits with an error on a difference. A label may differ only where
    /// the reference holds both labels within twice the tolerance (a near-tie).
    #[arg(long)]
    check: bool,

    /// Also time throughput: all queries of both sets on N threads, each with its own
    /// classifier (queries/s). 0: skip.
    #[arg(long, default_value_t = 0)]
    throughput_threads: usize,
}

#[derive(Serialize)]
struct Row {
    kind: &'static str,
    bundle: String,
    variant: String,
    mode: String,
    set: String,
    queries: usize,
    mean_tokens: f64,
    e2e_p50_us: f64,
    e2e_p99_us: f64,
    e2e_mean_us: f64,
    tokenize_p50_us: f64,
    /// The same texts through the `tokenizers` library alone (no ASCII fast path).
    tokenize_library_p50_us: f64,
    model_p50_us: f64,
    /// Median per round of the end-to-end p50 (spread shows the machine's noise).
    e2e_p50_rounds: Vec<f64>,
    load_ms: f64,
    /// Each length bucket `[len, shortest length its fixed plan serves]` after the races
    /// (`len + 1`: the symbolic plan serves the whole bucket; null: not raced).
    routes: Vec<(usize, Option<usize>)>,
    /// What one plan added to the process (bytes; null where not measured), which the
    /// memory budget of the fixed-length plans is weighed in.
    plan_bytes: Option<usize>,
}

struct Config {
    bundle: String,
    variant: String,
    mode: String,
    classifier: Classifier,
    /// Name, texts and each text's model inputs (a batch of one).
    sets: Vec<(String, Vec<String>, Vec<Batch>)>,
    e2e: Vec<Vec<f64>>,
    tok: Vec<Vec<f64>>,
    tok_slow: Vec<Vec<f64>>,
    model: Vec<Vec<f64>>,
    rounds: Vec<Vec<f64>>,
    load_ms: f64,
}

fn read_texts(path: &PathBuf) -> Result<Vec<String>> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    let mut lines = raw.lines();
    let first = lines.next().unwrap_or_default();
    let header: Vec<&str> = first.split(',').map(str::trim).collect();
    if let Some(col) = header.iter().position(|h| *h == "text") {
        // Minimal CSV: quoted fields with "" escapes, no embedded newlines.
        let mut out = Vec::new();
        for line in lines {
            let fields = split_csv(line);
            if let Some(t) = fields.get(col) {
                out.push(t.clone());
            }
        }
        Ok(out)
    } else {
        Ok(raw.lines().map(str::to_string).collect())
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// Short texts (≤ `short_max` tokens) and long ones (joined to fill `long` tokens).
fn query_sets(
    enc: &TextEncoder,
    texts: &[String],
    n: usize,
    short_max: usize,
    long: usize,
) -> Result<Vec<(String, Vec<String>)>> {
    let mut short = Vec::new();
    for t in texts {
        if short.len() == n {
            break;
        }
        if !t.trim().is_empty() && enc.encode(t)?.len() <= short_max {
            short.push(t.clone());
        }
    }
    let mut longs = Vec::new();
    let mut cur = String::new();
    for t in texts.iter().cycle().take(texts.len() * 4) {
        if longs.len() == n {
            break;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(t);
        if enc.encode(&cur)?.len() >= long.min(enc.max_len()) {
            longs.push(std::mem::take(&mut cur));
        }
    }
    if short.is_empty() || longs.is_empty() {
        bail!("not enough texts for the short/long query sets");
    }
    Ok(vec![("short".into(), short), ("long".into(), longs)])
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// `base`: the engine options of the command line and environment, which every mode
/// builds on.
pub fn run(a: BenchArgs, base: &EngineOptions) -> Result<()> {
    let texts = read_texts(&a.texts)?;
    let mut configs: Vec<Config> = Vec::new();
    let mut dump = serde_json::Map::new();
    for dir in &a.bundle {
        let verified = Bundle::read(dir)?.verify()?;
        let enc = TextEncoder::from_bundle(&verified)?;
        let sets = query_sets(&enc, &texts, a.queries, a.short_max, a.long)?;
        let mut encoded = Vec::new();
        for (name, qs) in &sets {
            let inputs: Vec<Batch> = qs
                .iter()
                .map(|t| enc.encode(t).map(|e| enc.batch(&[e])))
                .collect::<device::Result<_>>()?;
            encoded.push((name.clone(), qs.clone(), inputs));
        }
        let bundle_name = dir.display().to_string();
        dump.insert(
            bundle_name.clone(),
            serde_json::json!(encoded
                .iter()
                .map(|(n, qs, inputs)| {
                    let ids: Vec<&Vec<i64>> = inputs.iter().map(|b| &b.ids).collect();
                    (n.clone(), serde_json::json!({"texts": qs, "ids": ids}))
                })
                .collect::<serde_json::Map<_, _>>()),
        );
        let names: Vec<String> = verified
            .manifest()
            .variant_list()
            .into_iter()
            .map(|v| v.name)
            .filter(|n| a.variants.is_empty() || a.variants.contains(n))
            .collect();
        for variant in names {
            for mode in &a.modes {
                let options = engine_options(base, mode)?;
                let encoder = mode_encoder(mode, &verified)?;
                let choice = Choice::parse(&variant);
                let started = Instant::now();
                let engine = Engine::load_variant(&verified, &choice.variant, options)?;
                let classifier =
                    Classifier::new(encoder, engine, verified.manifest().labels.clone())?;
                let load_ms = started.elapsed().as_secs_f64() * 1e3;
                let k = encoded.len();
                configs.push(Config {
                    bundle: bundle_name.clone(),
                    variant: variant.clone(),
                    mode: mode.clone(),
                    classifier,
                    sets: encoded.clone(),
                    e2e: vec![Vec::new(); k],
                    tok: vec![Vec::new(); k],
                    tok_slow: vec![Vec::new(); k],
                    model: vec![Vec::new(); k],
                    rounds: vec![Vec::new(); k],
                    load_ms,
                });
            }
        }
    }
    if let Some(p) = &a.dump_queries {
        bundle::atomic::write_file_atomic(p, serde_json::to_string(&dump)?.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if a.check {
        return check(&a, &texts, base);
    }
    if a.profile {
        for c in &configs {
            for (name, _, inputs) in &c.sets {
                let runs = 200;
                let nodes = c.classifier.engine().profile(&inputs[0], runs)?;
                let total: f64 = nodes.iter().map(|n| n.1).sum::<f64>() / runs as f64;
                println!(
                    "== {} {} {} {name} ({} tokens): {total:.1} µs in nodes",
                    c.bundle, c.variant, c.mode, inputs[0].seq
                );
                let shown = a.profile_nodes;
                for (node, us) in nodes.iter().take(shown) {
                    println!("{:8.2} µs  {node}", us / runs as f64);
                }
                if nodes.len() > shown {
                    let rest: f64 = nodes[shown..].iter().map(|n| n.1).sum::<f64>() / runs as f64;
                    println!("{rest:8.2} µs  in the other {} nodes", nodes.len() - shown);
                }
            }
        }
        return Ok(());
    }
    // Warm-up: one pass of every query of every configuration.
    for c in &configs {
        for (_, qs, _) in &c.sets {
            for q in qs {
                c.classifier.classify(q)?;
            }
        }
    }
    for _ in 0..a.rounds.max(1) {
        for c in configs.iter_mut() {
            for (si, (_, qs, inputs)) in c.sets.iter().enumerate() {
                let mut round = Vec::with_capacity(qs.len());
                for (q, input) in qs.iter().zip(inputs) {
                    let t0 = Instant::now();
                    let p = c.classifier.classify(q)?;
                    let t1 = Instant::now();
                    std::hint::black_box(&p);
                    let e = c.classifier.encoder().encode(q)?;
                    let t2 = Instant::now();
                    std::hint::black_box(&e);
                    let t2b = Instant::now();
                    let e = c.classifier.encoder().encode_slow(q)?;
                    let t2c = Instant::now();
                    std::hint::black_box(&e);
                    let t3 = Instant::now();
                    let out = c.classifier.engine().run_batch(input)?;
                    let t4 = Instant::now();
                    std::hint::black_box(&out);
                    let us = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e6;
                    c.e2e[si].push(us(t0, t1));
                    round.push(us(t0, t1));
                    c.tok[si].push(us(t1, t2));
                    c.tok_slow[si].push(us(t2b, t2c));
                    c.model[si].push(us(t3, t4));
                }
                c.rounds[si].push(pct(&sorted(&round), 0.5));
            }
        }
    }
    for c in &configs {
        for (si, (name, _, inputs)) in c.sets.iter().enumerate() {
            let e = sorted(&c.e2e[si]);
            let row = Row {
                kind: "latency",
                bundle: c.bundle.clone(),
                variant: c.variant.clone(),
                mode: c.mode.clone(),
                set: name.clone(),
                queries: inputs.len(),
                mean_tokens: inputs.iter().map(|b| b.seq).sum::<usize>() as f64
                    / inputs.len() as f64,
                e2e_p50_us: pct(&e, 0.5),
                e2e_p99_us: pct(&e, 0.99),
                e2e_mean_us: e.iter().sum::<f64>() / e.len() as f64,
                tokenize_p50_us: pct(&sorted(&c.tok[si]), 0.5),
                tokenize_library_p50_us: pct(&sorted(&c.tok_slow[si]), 0.5),
                model_p50_us: pct(&sorted(&c.model[si]), 0.5),
                e2e_p50_rounds: c.rounds[si].clone(),
                load_ms: c.load_ms,
                routes: c.classifier.engine().routes(),
                plan_bytes: c.classifier.engine().plan_bytes(),
            };
            println!("{}", serde_json::to_string(&row)?);
        }
    }
    if a.throughput_threads > 0 {
        throughput(&a, &configs, base)?;
    }
    Ok(())
}

/// The engine a plan mode (`--modes`) stands for, on top of `base` (a switch the command
/// line or environment turned on stays on).
fn engine_options(base: &EngineOptions, mode: &str) -> Result<EngineOptions> {
    if !["buckets", "fixed", "symbolic", "baseline"].contains(&mode) {
        bail!("unknown mode {mode:?} (buckets, fixed, symbolic, baseline)");
    }
    let mut options = base.clone();
    options.plans.symbolic_only |= mode == "symbolic" || mode == "baseline";
    options.plans.fixed_plans |= mode == "fixed";
    options.fusion.tract_ops |= mode == "baseline";
    Ok(options)
}

/// The bundle's tokenizer as a plan mode uses it (`baseline`: without the fast path).
fn mode_encoder(mode: &str, verified: &VerifiedBundle) -> Result<TextEncoder> {
    let encoder = TextEncoder::from_bundle(verified)?;
    Ok(if mode == "baseline" {
        encoder.without_fast_path()
    } else {
        encoder
    })
}

/// Queries/s over every query of every set, on `throughput_threads` threads, each with its
/// own classifier (own run state): the board's "file of queries" case.
fn throughput(a: &BenchArgs, configs: &[Config], base: &EngineOptions) -> Result<()> {
    let n = a.throughput_threads;
    for c in configs {
        let all: Vec<&String> = c.sets.iter().flat_map(|(_, qs, _)| qs).collect();
        let verified = Bundle::read(&c.bundle)?.verify()?;
        let options = engine_options(base, &c.mode)?;
        let workers: Vec<Classifier> = (0..n)
            .map(|_| -> Result<Classifier> {
                Ok(Classifier::new(
                    mode_encoder(&c.mode, &verified)?,
                    Engine::load_variant(&verified, &c.variant, options.clone())?,
                    verified.manifest().labels.clone(),
                )?)
            })
            .collect::<Result<_>>()?;
        let reps = a.rounds.max(1);
        let started = Instant::now();
        std::thread::scope(|s| {
            for (w, cl) in workers.iter().enumerate() {
                let all = &all;
                s.spawn(move || {
                    for _ in 0..reps {
                        for q in all.iter().skip(w).step_by(n) {
                            let _ = cl.classify(q);
                        }
                    }
                });
            }
        });
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "kind": "throughput", "bundle": c.bundle, "variant": c.variant, "mode": c.mode,
                "threads": n, "queries": all.len() * reps, "seconds": secs,
                "queries_per_s": (all.len() * reps) as f64 / secs,
            })
        );
    }
    Ok(())
}

/// Labels identical and probabilities within 1e-5 (2e-2 for int8-compute): fixed-length
/// plans and the fused symbolic plan vs the symbolic plan with tract's ops. A different
/// label counts as a failure unless the reference holds both labels within twice that
/// tolerance (a near-tie, which the probability bound already covers).
fn check(a: &BenchArgs, texts: &[String], base: &EngineOptions) -> Result<()> {
    let mut failed = false;
    for dir in &a.bundle {
        let verified = Bundle::read(dir)?.verify()?;
        let enc = TextEncoder::from_bundle(&verified)?;
        let sets = query_sets(&enc, texts, a.queries, a.short_max, a.long)?;
        let all: Vec<&String> = texts.iter().chain(&sets[1].1).collect();
        for v in verified.manifest().variant_list() {
            if !a.variants.is_empty() && !a.variants.contains(&v.name) {
                continue;
            }
            let load = |symbolic_only: bool, tract_ops: bool| {
                let mut options = base.clone();
                options.plans.symbolic_only |= symbolic_only;
                // The reference runs tract's own LayerNorm, Softmax and additions, so the
                // check covers the fused kernels too.
                options.fusion.tract_ops |= tract_ops;
                // Every fixed-length plan, whichever would win its race.
                options.plans.fixed_plans = true;
                Engine::load_variant(&verified, &v.name, options)
            };
            // The fixed-length plans and the symbolic plan with the fused kernels (its
            // additions are the device's), against the symbolic plan with tract's ops.
            let fast = [load(false, false)?, load(true, false)?];
            let plain = load(true, true)?;
            // int8-compute quantises activations at run time: a different summation order
            // in another plan can move a value across a rounding boundary (one int8 step),
            // so its probabilities agree to ~1e-3..5e-3 (MiniLM), not 1e-7. That is well
            // inside the variant's own quantisation noise (its export check accepts logit
            // differences of ~0.16 from the candle simulation).
            let tol = if v.name == bundle::Variant::Int8Compute.name() {
                2e-2
            } else {
                1e-5
            };
            let (mut labels_differ, mut max_p, mut max_alpha) = (0usize, 0f32, 0f32);
            let mut near_ties = 0usize;
            let mut tokens_differ = 0usize;
            for t in &all {
                let e = enc.encode(t)?;
                tokens_differ += usize::from(e != enc.encode_slow(t)?);
                let input = enc.batch(&[e]);
                let (lp, ap) = plain.run_batch(&input)?;
                let pp = device::softmax(&lp);
                let diff = |x: &[f32], y: &[f32]| {
                    x.iter()
                        .zip(y)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max)
                };
                for engine in &fast {
                    let (lf, af) = engine.run_batch(&input)?;
                    let pf = device::softmax(&lf);
                    match label_agreement(&pp, &pf, tol) {
                        LabelAgreement::Same => {}
                        LabelAgreement::NearTie => {
                            labels_differ += 1;
                            near_ties += 1;
                        }
                        LabelAgreement::Differs => labels_differ += 1,
                    }
                    max_p = max_p.max(diff(&pf, &pp));
                    max_alpha = max_alpha.max(diff(&af, &ap));
                }
            }
            let ok = labels_differ == near_ties && max_p <= tol && tokens_differ == 0;
            failed |= !ok;
            println!(
                "{}",
                serde_json::json!({
                    "kind": "check", "bundle": dir.display().to_string(), "variant": v.name,
                    "texts": all.len(), "labels_differ": labels_differ,
                    "labels_differ_at_near_ties": near_ties,
                    "tokens_differ": tokens_differ, "fast_tokenizer": enc.has_fast_path(),
                    "max_prob_diff": max_p, "max_attention_diff": max_alpha, "ok": ok,
                })
            );
        }
    }
    if failed {
        bail!("fixed-length plans differ from the symbolic plan, or the tokenizer fast path from the library");
    }
    Ok(())
}

/// How one plan's answer compares with the reference plan's.
#[derive(Debug, PartialEq, Eq)]
enum LabelAgreement {
    Same,
    /// A different label that the reference holds within 2·tol of its own: each
    /// probability may move by `tol`, so the two may trade places without anything moving
    /// further than the probability bound allows.
    NearTie,
    Differs,
}

fn label_agreement(reference: &[f32], other: &[f32], tol: f32) -> LabelAgreement {
    let argmax = |p: &[f32]| {
        (0..p.len())
            .max_by(|&i, &j| p[i].total_cmp(&p[j]))
            .unwrap_or(0)
    };
    let (want, got) = (argmax(reference), argmax(other));
    if want == got {
        LabelAgreement::Same
    } else if reference[want] - reference.get(got).copied().unwrap_or(0.0) <= 2.0 * tol {
        LabelAgreement::NearTie
    } else {
        LabelAgreement::Differs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_may_differ_only_at_a_near_tie() {
        let reference = [0.50, 0.49, 0.01];
        // Same top label, whatever the other values.
        assert_eq!(
            label_agreement(&reference, &[0.6, 0.3, 0.1], 1e-5),
            LabelAgreement::Same
        );
        // The runner-up 0.01 below the top: within 2·tol for tol = 0.005 ...
        assert_eq!(
            label_agreement(&reference, &[0.494, 0.496, 0.01], 5e-3),
            LabelAgreement::NearTie
        );
        // ... but not for a float plan's 1e-5, nor for a label far below the top.
        assert_eq!(
            label_agreement(&reference, &[0.494, 0.496, 0.01], 1e-5),
            LabelAgreement::Differs
        );
        assert_eq!(
            label_agreement(&reference, &[0.3, 0.3, 0.4], 2e-2),
            LabelAgreement::Differs
        );
    }
}
