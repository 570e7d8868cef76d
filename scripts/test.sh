#!/usr/bin/env bash
# Set up everything the tests need (Python deps, the infinity-emb venv, nginx, redis-server)
# and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
