#!/usr/bin/env bash
# The accuracy benchmark (train → quantise → export → evaluate the int8 bundle through
# tract, on ../shared/data/{snips,clinc150}); writes docs/accuracy.md. See accuracy.py.
#   tools/benchmarks/accuracy.sh [--models tiny minilm tiny-distilled] [--reuse]
#   tools/benchmarks/accuracy.sh --smoke
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 tools/benchmarks/accuracy.py "$@"
