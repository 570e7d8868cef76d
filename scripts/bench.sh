#!/usr/bin/env bash
# Benchmarks: set up what they need (scripts/bootstrap.sh bench) and run every section; writes
# docs/benchmarks.md, docs/benchmarks.png and docs/benchmarks.json. A full run takes about 20 minutes
# on 2 cores; --quick is a short smoke run. Arguments go to `python -m bench` (--only, --skip, --tool).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh bench
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1
exec .venv/bin/python -m bench "$@"
