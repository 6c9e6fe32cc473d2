#!/usr/bin/env python3
"""Two builds of the device binary, interleaved on one machine: is a refactor within noise?

    tools/benchmarks/compare_builds.py --before OLD/device --after target/release/device \\
        BUNDLE [BUNDLE …] [--texts FILE] [--queries N] [--rounds N]

Each round runs `device bench-latency --rounds 1` of the before binary, then of the after
binary (the order alternates every round, so a machine that slows down during the run
penalises both alike), on every variant of every bundle, short and 64-token sets. Prints a
markdown table: per configuration the median over rounds of each build's end-to-end p50,
the ratio after/before, and the spread of the before build's own rounds (max/min of its
per-round p50s), which is the noise a ratio has to be read against.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(binary, bundles, texts, queries):
    cmd = [binary, "bench-latency", "--texts", texts, "--queries", str(queries), "--rounds", "1"]
    for b in bundles:
        cmd += ["--bundle", b]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        r = json.loads(line)
        if r.get("kind") == "latency":
            key = (Path(r["bundle"]).name if len(bundles) == 1 else r["bundle"], r["variant"], r["set"])
            rows[key] = r["e2e_p50_us"]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--before", required=True, help="the device binary before the change")
    ap.add_argument("--after", default=str(ROOT / "target/release/device"), help="the device binary after it")
    ap.add_argument("--texts", default=str(ROOT / "models/demo/test.csv"))
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args()
    for b in (a.before, a.after):
        if not Path(b).is_file():
            sys.exit(f"compare_builds: no binary {b}")
    runs = {"before": [], "after": []}
    for r in range(a.rounds):
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for which in order:
            print(f"round {r + 1}/{a.rounds}: {which}", file=sys.stderr, flush=True)
            runs[which].append(run(getattr(a, which), a.bundles, a.texts, a.queries))
    keys = sorted(runs["before"][0])
    print(f"| bundle | variant | set | before p50 µs | after p50 µs | after/before | before's own spread |")
    print("|---|---|---|---|---|---|---|")
    for k in keys:
        b = [x[k] for x in runs["before"]]
        f = [x[k] for x in runs["after"] if k in x]
        if not f:
            continue
        mb, mf = statistics.median(b), statistics.median(f)
        print(f"| {k[0]} | {k[1]} | {k[2]} | {mb:.1f} | {mf:.1f} | {mf / mb:.3f} | {max(b) / min(b):.3f} |")
    print(f"\n{a.rounds} interleaved rounds, {a.queries} queries per set, texts {a.texts}")


if __name__ == "__main__":
    main()
