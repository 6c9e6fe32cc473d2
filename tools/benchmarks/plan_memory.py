#!/usr/bin/env python3
"""What the fixed-length plans' memory budget (DEVICE_PLAN_MEMORY_MB) changes in `device serve`:
peak RSS, anonymous memory and cold start with perf.py's own probe (the first 200 texts of
TEXTS over a pseudo-terminal), median of 3 rounds, budgets interleaved within each round.

    python3 tools/benchmarks/plan_memory.py BUNDLE VARIANT 0,default,100000 [TEXTS]

`default` leaves the variable unset (the engine's default budget). Prints one JSON line per
budget. Needs target/release/device (cargo build --release -p device)."""
import csv
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402

if len(sys.argv) < 4:
    sys.exit(__doc__)
bundle, variant, budgets = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
texts_file = sys.argv[4] if len(sys.argv) > 4 else perf.ROOT.parent / "shared/data/snips/test.csv"
with open(texts_file, newline="", encoding="utf-8") as f:
    texts = [r["text"] for r in csv.DictReader(f)][:200]
runs = {b: [] for b in budgets}
for _ in range(3):
    for b in budgets:
        if b == "default":
            os.environ.pop("DEVICE_PLAN_MEMORY_MB", None)
        else:
            os.environ["DEVICE_PLAN_MEMORY_MB"] = b
        runs[b].append(perf.serve_probe(bundle, texts, variant))
for b in budgets:
    med = {k: statistics.median([r[k] or 0 for r in runs[b]]) for k in runs[b][0]}
    print(json.dumps({"budget_mb": b, "variant": variant, "peak_mb": med["vmhwm_kb"] / 1000,
                      "anon_mb": med["rss_anon_kb"] / 1000, "cold_start_ms": round(med["cold_start_ms"]),
                      "answered": med["answered"]}))
