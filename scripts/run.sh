#!/usr/bin/env bash
# Quick start: set up .venv and run the gateway on the embedded default config.
# Listens on 127.0.0.1:8085 (this machine only); HOST=0.0.0.0 exposes it, PORT picks another port.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
echo "maas quick start: setting up .venv (the first run installs torch, the models and the gateway: a few minutes)"
bash scripts/bootstrap.sh run
echo "maas quick start: set up in $((SECONDS - started)) s; starting the gateway on http://${HOST:-127.0.0.1}:${PORT:-8085}"
echo "maas quick start: the models load in the background; try: curl http://${HOST:-127.0.0.1}:${PORT:-8085}/health/ready"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
exec .venv/bin/maas serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8085}"
