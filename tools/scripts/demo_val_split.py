#!/usr/bin/env python3
"""A validation split of the demo's training rows that, like the test split, holds out
phrasings and slot values, for choosing a recipe without looking at models/demo/test.csv.

Usage: tools/scripts/demo_val_split.py [OUT_DIR] [--share F] [--seed N]
Writes OUT_DIR/train.csv and OUT_DIR/val.csv (header text,label; default OUT_DIR:
runs/demo-val) from models/demo/train.csv.

It re-runs models/demo/generate.py in memory (nothing is written there), recording which
template and which slot values made each training row, and checks that this reproduces
train.csv row for row. Then, per label, a seeded share F (default 0.2) of the templates
(English and Chinese; a hand-written sentence counts as its own template) and a share F
of every slot kind's training values are held out: a row goes to val.csv when its template
is held out or it contains a held-out value, like a test row (a held-out template, or a
training template filled only with held-out values); train.csv keeps the rest. The
split never reads test.csv's rows.
"""
import collections
import csv
import importlib.util
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_generate():
    path = os.path.join(ROOT, "models", "demo", "generate.py")
    spec = importlib.util.spec_from_file_location("demo_generate", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def main():
    args = sys.argv[1:]
    share, seed = 0.2, 29
    if "--share" in args:
        i = args.index("--share")
        share = float(args[i + 1])
        del args[i:i + 2]
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i:i + 2]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        sys.exit(__doc__)
    out = args[0] if args else "runs/demo-val"
    gen = load_generate()

    # generate.py's fill, remembering the template and values of the last text it made.
    last = {}
    made = {}  # generated text -> (template, [(slot kind, value)])
    fill_values = gen.fill_values

    def fill(rng, template, slots, pool_index):
        text, values = fill_values(rng, template, slots, pool_index)
        last.update(text=text, template=template, values=values)
        return text

    def recording(noise):
        def wrapped(rng, text, *rest):
            result = noise(rng, text, *rest)
            if last.get("text") == text:
                made[result] = (last["template"], last["values"])
            else:  # a hand-written sentence
                made[result] = (text, [])
            return result
        return wrapped

    gen.fill = fill
    gen.noisy = recording(gen.noisy)
    gen.zh_noisy = recording(gen.zh_noisy)

    first_train, test_rows = gen.generate_v1()
    rng = random.Random(gen.SEED_MORE)
    taken = {gen.norm(t) for t, _ in first_train + test_rows}
    rows = first_train + gen.gen_more(rng, taken)
    rng.shuffle(rows)
    with open(os.path.join(ROOT, "models", "demo", "train.csv"), newline="",
              encoding="utf-8") as f:
        shipped = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    if rows != shipped:
        sys.exit("demo_val_split: generate.py no longer reproduces models/demo/train.csv")

    pick = random.Random(seed)
    templates = collections.defaultdict(set)
    values = collections.defaultdict(set)
    for text, label in rows:
        template, vals = made.get(text, (text, []))
        templates[label].add(template)
        for kind, v in vals:
            values[kind].add(v)

    def held(pool):
        pool = sorted(pool)
        return set(pick.sample(pool, round(len(pool) * share))) if len(pool) > 1 else set()

    held_templates = {label: held(ts) for label, ts in sorted(templates.items())}
    held_values = {kind: held(vs) for kind, vs in sorted(values.items())}
    train, val = [], []
    for text, label in rows:
        template, vals = made.get(text, (text, []))
        out_of_train = template in held_templates[label] or any(
            v in held_values[kind] for kind, v in vals)
        (val if out_of_train else train).append((text, label))

    os.makedirs(out, exist_ok=True)
    for name, part in (("train.csv", train), ("val.csv", val)):
        with open(os.path.join(out, name), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["text", "label"])
            w.writerows(part)
    n_t = sum(len(v) for v in held_templates.values())
    n_v = sum(len(v) for v in held_values.values())
    print(f"{len(train)} training rows, {len(val)} validation rows ({n_t} templates and "
          f"{n_v} slot values held out) in {out}")


if __name__ == "__main__":
    main()
