#!/usr/bin/env bash
# Set up everything the tests need (Python deps, the infinity-emb venv, nginx, redis-server),
# run the static checks (ruff, mypy; configured in pyproject.toml) and the whole suite.
# Extra arguments go to pytest; MAAS_SKIP_LINT=1 skips the static checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
if [ "${MAAS_SKIP_LINT:-0}" != 1 ]; then
  .venv/bin/ruff check --quiet .
  .venv/bin/mypy --no-error-summary
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
