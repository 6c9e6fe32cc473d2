#!/usr/bin/env python3
"""Per-language figures of a demo run: accuracy over all test texts, the Chinese ones
(any CJK ideograph) and the rest, and how many results show `[UNK]` in `top_tokens`.

Usage: tools/scripts/demo_report.py TEST.csv PREDICTIONS.jsonl [--json]
(PREDICTIONS.jsonl: `device classify` output, one line per TEST.csv row, in order.)
"""
import csv
import json
import sys


def is_cjk(c):
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF
            or 0x20000 <= o <= 0x2FA1F)


def main():
    args = [a for a in sys.argv[1:] if a != "--json"]
    if len(args) != 2:
        sys.exit(__doc__)
    with open(args[0], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(args[1], encoding="utf-8") as f:
        preds = [json.loads(line) for line in f if line.strip()]
    if len(rows) != len(preds):
        sys.exit(f"{len(rows)} test rows but {len(preds)} predictions")
    groups = {"all": [], "chinese": [], "other": []}
    unk = {"all": 0, "chinese": 0, "other": 0}
    for r, p in zip(rows, preds):
        lang = "chinese" if any(is_cjk(c) for c in r["text"]) else "other"
        ok = p["label"] == r["label"]
        has_unk = any(t["token"] == "[UNK]" for t in p.get("top_tokens", []))
        for g in ("all", lang):
            groups[g].append(ok)
            unk[g] += has_unk
    report = {
        g: {"n": len(v), "accuracy": round(sum(v) / len(v), 4) if v else None,
            "results_with_unk_in_top_tokens": unk[g]}
        for g, v in groups.items()
    }
    if "--json" in sys.argv:
        print(json.dumps(report))
        return
    for g, v in report.items():
        acc = "–" if v["accuracy"] is None else f"{v['accuracy']:.4f}"
        print(f"{g:>8}: accuracy {acc} on {v['n']} texts; "
              f"[UNK] in top_tokens of {v['results_with_unk_in_top_tokens']}")


if __name__ == "__main__":
    main()
