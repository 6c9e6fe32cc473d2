#!/usr/bin/env bash
# The main job on the shipped demo data: train → export → classify on the device runtime → report.
# Usage: tools/scripts/demo.sh [OUT_DIR]    (default: runs/demo)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/demo}
mkdir -p "$out"

echo "== build (release)"
cargo build --release -p tools -p device
bin=target/release

echo "== train the tiny preset on models/demo/train.csv"
"$bin/tools" train --train models/demo/train.csv --out "$out/ckpt" --preset tiny --force

echo "== export to a bundle (ONNX + tokenizer + manifest), checked with tract"
"$bin/tools" export --model "$out/ckpt" --out "$out/bundle" --force

echo "== classify the test set with the device runtime"
tail -n +2 models/demo/test.csv | python3 -c 'import csv,sys; [print(r[0]) for r in csv.reader(sys.stdin)]' \
  | "$bin/device" classify --bundle "$out/bundle" > "$out/predictions.jsonl"
head -n 3 "$out/predictions.jsonl"
echo "... $(wc -l < "$out/predictions.jsonl") predictions in $out/predictions.jsonl"

echo "== report: bundle (tract) on the test set"
"$bin/tools" eval --model "$out/bundle" --data models/demo/test.csv
echo
echo "== by language (device classify on the test set)"
python3 tools/scripts/demo_report.py models/demo/test.csv "$out/predictions.jsonl"
echo
echo "training curves: $out/ckpt/training_curves.svg; confusion matrix: $out/bundle.confusion.svg"
echo "out-of-scope trade-off: $out/bundle.rejection_curve.svg (validation: $out/ckpt/rejection_curve.svg)"
