#!/usr/bin/env python3
"""The device against onnxruntime on one bundle, interleaved: a few minutes where perf.py takes
twenty, for checking one change on one CPU (docs/benchmarks.md, "How to reproduce").

    tools/benchmarks/side_by_side.py BUNDLE [--texts FILE] [--queries N] [--rounds N]

Per round: `device bench-latency --modes buckets` on every variant of BUNDLE (end to end:
tokenise + tract + softmax, batch 1, one thread), then onnxruntime on the same ONNX files and
the same token ids (perf.py's runner: Python `tokenizers`, 1 intra/inter-op thread). Prints a
markdown table of end-to-end p50 per round and the ratio of their medians.

Needs: target/release/device, python3 with numpy, onnxruntime, tokenizers.
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402  (the runner and the device path live there)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--texts", default=str(perf.ROOT.parent / "shared/data/snips/test.csv"))
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    bundle = Path(a.bundle).resolve()
    if not (bundle / "manifest.json").is_file():
        sys.exit(f"side_by_side: {bundle} is not a bundle (no manifest.json)")
    if not Path(a.texts).is_file():
        sys.exit(f"side_by_side: no texts file {a.texts}")
    dev, ort = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        queries = Path(tmp) / "queries.json"
        for r in range(a.rounds):
            perf.log(f"round {r + 1}/{a.rounds}")
            rows = perf.jsonl(perf.run([perf.DEVICE, "bench-latency", "--bundle", bundle, "--texts", a.texts,
                                        "--queries", a.queries, "--rounds", 1, "--modes", "buckets",
                                        "--dump-queries", queries]).stdout)
            for d in rows:
                if d.get("kind") == "latency":
                    dev.setdefault((d["variant"], d["set"]), []).append(d["e2e_p50_us"])
            for x in perf.ort_round([bundle], queries, [1]):
                ort.setdefault((x["variant"], x["set"]), []).append(x["e2e_p50_us"])
    # Two estimates of the ratio: of the medians, and the median of each round's own ratio
    # (device and onnxruntime measured seconds apart, so the VM's slow drift cancels).
    print("| variant | set | device e2e p50 per round (µs) | onnxruntime e2e p50 per round (µs) "
          "| device / onnxruntime (medians) | median of per-round ratios |")
    print("|---|---|---|---|---|---|")
    for key in sorted(dev):
        d, o = dev[key], ort.get(key, [])
        ratio = f"{statistics.median(d) / statistics.median(o):.2f}x" if o else "–"
        paired = [x / y for x, y in zip(d, o)]
        per_round = f"{statistics.median(paired):.2f}x" if paired else "–"
        fmt = lambda xs: " / ".join(f"{x:,.0f}" for x in xs) or "–"
        print(f"| {key[0]} | {key[1]} | {fmt(d)} | {fmt(o)} | {ratio} | {per_round} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
