#!/usr/bin/env python3
"""Stratified k-fold splits of a training file, for choosing a recipe by cross-validation
when one held-out share is too small to tell recipes apart (SNIPS: a seeded 10% of train
scores 0.99 for every recipe).

Usage: tools/scripts/cv_split.py TRAIN.csv OUT_DIR [--folds K] [--seed N]
(docs/accuracy.md: `cv_split.py ../shared/data/snips/train.csv runs/snips-cv`)
Writes OUT_DIR/fold{i}/train.csv and OUT_DIR/fold{i}/val.csv (header text,label) for
i = 0..K-1 (default K = 3, seed 29). Per label, the rows are shuffled with the seed and
dealt round-robin to the folds, so every fold holds about 1/K of each label; fold i's
val.csv is its rows and its train.csv all the others, in the file's order. Every row is in
exactly one val.csv.
"""
import csv
import os
import random
import sys


def main():
    args = sys.argv[1:]
    folds, seed = 3, 29
    if "--folds" in args:
        i = args.index("--folds")
        folds = int(args[i + 1])
        del args[i : i + 2]
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2 or folds < 2:
        sys.exit(__doc__)
    src, out = args
    with open(src, newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    by_label = {}
    for idx, (_, label) in enumerate(rows):
        by_label.setdefault(label, []).append(idx)
    rng = random.Random(seed)
    fold_of = [0] * len(rows)
    offset = 0
    for label in sorted(by_label):
        idxs = by_label[label]
        rng.shuffle(idxs)
        for j, idx in enumerate(idxs):
            fold_of[idx] = (offset + j) % folds
        offset += len(idxs)
    for k in range(folds):
        d = os.path.join(out, f"fold{k}")
        os.makedirs(d, exist_ok=True)
        for name, keep in (("train.csv", lambda f: f != k), ("val.csv", lambda f: f == k)):
            with open(os.path.join(d, name), "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["text", "label"])
                n = 0
                for (text, label), fo in zip(rows, fold_of):
                    if keep(fo):
                        w.writerow([text, label])
                        n += 1
        print(f"fold{k}: val {sum(1 for f in fold_of if f == k)}, train {len(rows) - sum(1 for f in fold_of if f == k)}")


if __name__ == "__main__":
    main()
