#!/usr/bin/env bash
# Quick start: set up .venv and run the gateway on the embedded default config on port 8085.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh run
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
exec .venv/bin/maas serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8085}"
