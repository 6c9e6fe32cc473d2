#!/usr/bin/env python3
"""The first query of each length against the rest: does a fresh process stall?

    tools/benchmarks/first_query.py BUNDLE [--device target/release/device] [--texts FILE]
                                    [--variant NAME] [--repeat N]

Feeds the texts (a `text` column CSV or one per line; default the demo test set) to a fresh
`device classify --bundle BUNDLE` on stdin, the streaming path `device serve` shares, and
reads each answer's `inference_us` (on-device time: tokenising, the model, the
explanation). Per length bucket (8, 16, 32, 64 tokens, the engine's fixed-length plans) it
prints the time of the bucket's first text, the bucket's p50 over the rest, and their ratio;
the worst ratio is the stall a user would see. `--repeat N` runs N fresh processes and
reports the median of each figure.

Needs python3 with `tokenizers` (token counts of the texts, to put them in buckets).
"""
import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUCKETS = [8, 16, 32, 64]


def read_texts(path):
    p = Path(path)
    if p.suffix == ".csv":
        with p.open(newline="", encoding="utf-8") as f:
            return [row["text"] for row in csv.DictReader(f)]
    return [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def token_counts(bundle, texts):
    """Token count per text ([CLS] and [SEP] included, cut at 64) by the bundle's own
    tokenizer.json through the `tokenizers` library (the device's tokenizer gives the same
    ids for ASCII text; the caller keeps ASCII texts only)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    return [min(64, len(tok.encode(t).ids)) for t in texts]


def one_run(device, bundle, texts, variant):
    cmd = [device, "classify", "--bundle", bundle, "--allow-unsigned"]
    if variant:
        cmd += ["--variant", variant]
    out = subprocess.run(cmd, input="\n".join(texts) + "\n", capture_output=True, text=True, check=True)
    times = []
    for line in out.stdout.splitlines():
        r = json.loads(line)
        times.append(r.get("inference_us"))
    if len(times) != len(texts):
        sys.exit(f"first_query: {len(times)} answers for {len(texts)} texts:\n{out.stderr}")
    ready = [l for l in out.stderr.splitlines() if "plans ready" in l]
    return times, (ready[0] if ready else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--device", default=str(ROOT / "target/release/device"))
    ap.add_argument("--texts", default=str(ROOT / "models/demo/test.csv"))
    ap.add_argument("--variant")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    # ASCII texts (token counts as the device makes them), then longer ones made by
    # joining them, so every bucket up to 64 tokens has texts; shuffled with a fixed seed
    # so each bucket's first text comes at a different point of the run.
    short = [t for t in read_texts(a.texts) if t.isascii()]
    longer = [" and ".join(short[i:i + k]) for k in (3, 6) for i in range(0, 20 * k, k)]
    texts = short + longer
    random.Random(7).shuffle(texts)
    lengths = token_counts(a.bundle, texts)
    bucket_of = [next((b for b in BUCKETS if n <= b), BUCKETS[-1]) for n in lengths]
    per_bucket = {b: {"first": [], "p50": []} for b in BUCKETS}
    ready = ""
    for _ in range(a.repeat):
        times, ready = one_run(a.device, a.bundle, texts, a.variant)
        for b in BUCKETS:
            ts = [t for t, bb in zip(times, bucket_of) if bb == b]
            if len(ts) >= 2:
                per_bucket[b]["first"].append(ts[0])
                per_bucket[b]["p50"].append(statistics.median(ts[1:]))
    print(f"device {a.device}, bundle {a.bundle}, {len(texts)} texts, {a.repeat} fresh processes")
    if ready:
        print(f"start-up: {ready.strip()}")
    print("| bucket (tokens) | first text µs | p50 of the rest µs | first / p50 |")
    print("|---|---|---|---|")
    worst = 0.0
    for b in BUCKETS:
        f, p = per_bucket[b]["first"], per_bucket[b]["p50"]
        if not f:
            continue
        mf, mp = statistics.median(f), statistics.median(p)
        worst = max(worst, mf / mp)
        print(f"| ≤ {b} | {mf:.0f} | {mp:.0f} | {mf / mp:.2f} |")
    print(f"worst first / p50: {worst:.2f}")


if __name__ == "__main__":
    main()
