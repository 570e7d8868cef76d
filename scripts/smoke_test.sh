#!/usr/bin/env bash
# Smoke test of a running gateway: the deployment guide's checks, each one asserted.
#
#   ./scripts/smoke_test.sh [BASE_URL]          (default: $MAAS_BASE_URL or http://localhost:8085)
#
# Environment:
#   MAAS_API_KEY             sent as "Authorization: Bearer ..." when set (never printed)
#   MAAS_SMOKE_EMBED_MODEL   embedding model to call (bge-m3)
#   MAAS_SMOKE_EMBED_DIM     its expected vector length (1024)
#   MAAS_SMOKE_RERANK_MODEL  rerank model to call (rerank-base); empty skips the rerank check
#   CURL_CA_BUNDLE           CA file for an https:// URL with a private CA (read by curl)
# Exits 0 when every check passes, 1 when any fails (each failure shows the response).
set -euo pipefail

BASE=${1:-${MAAS_BASE_URL:-http://localhost:8085}}
BASE=${BASE%/}
EMBED_MODEL=${MAAS_SMOKE_EMBED_MODEL:-bge-m3}
EMBED_DIM=${MAAS_SMOKE_EMBED_DIM:-1024}
RERANK_MODEL=${MAAS_SMOKE_RERANK_MODEL-rerank-base}
PY=${PYTHON:-python3}

auth=()
if [ -n "${MAAS_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer ${MAAS_API_KEY}"); fi

body=$(mktemp)
trap 'rm -f "$body"' EXIT
failures=0

# call METHOD PATH [JSON]: the status code on stdout, the body in $body.
call() {
  local method=$1 path=$2 data=${3:-}
  local args=(-sS -o "$body" -w '%{http_code}' --max-time 60 -X "$method" "${auth[@]}")
  if [ -n "$data" ]; then args+=(-H "Content-Type: application/json" -d "$data"); fi
  curl "${args[@]}" "$BASE$path" || true  # on a connection failure curl still prints 000
}

# check NAME STATUS PYTHON_EXPR: the response must have STATUS and PYTHON_EXPR must hold for
# its JSON body bound to `r`.
check() {
  local name=$1 want=$2 got=$3 expr=$4
  if [ "$got" != "$want" ]; then
    echo "FAIL $name: HTTP $got (want $want): $(head -c 500 "$body")"
    failures=$((failures + 1)); return
  fi
  if ! "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if ($expr) else 1)" "$body" 2>/dev/null; then
    echo "FAIL $name: unexpected body: $(head -c 500 "$body")"
    failures=$((failures + 1)); return
  fi
  echo "ok   $name"
}

echo "smoke test of $BASE"
check "health/ready" 200 "$(call GET /health/ready)" 'r == {"status": "ok"}'
check "health/live" 200 "$(call GET /health/live)" 'r == {"status": "ok"}'
check "v1/models lists $EMBED_MODEL" 200 "$(call GET /v1/models)" \
  "r['object'] == 'list' and '$EMBED_MODEL' in [m['id'] for m in r['data']]"
check "v1/embeddings $EMBED_MODEL has $EMBED_DIM dimensions" 200 \
  "$(call POST /v1/embeddings "{\"model\": \"$EMBED_MODEL\", \"input\": \"test\"}")" \
  "len(r['data'][0]['embedding']) == $EMBED_DIM and r['usage']['prompt_tokens'] > 0"
if [ -n "$RERANK_MODEL" ]; then
  check "v1/rerank $RERANK_MODEL top_k=1" 200 \
    "$(call POST /v1/rerank "{\"model\": \"$RERANK_MODEL\", \"query\": \"test\", \"documents\": [\"a\", \"b\"], \"top_k\": 1}")" \
    "len(r['results']) == 1 and r['results'][0]['index'] in (0, 1)"
fi
check "unknown model is an OpenAI-shaped 404" 404 \
  "$(call POST /v1/embeddings '{"model": "no-such-model-smoke", "input": "test"}')" \
  "r['error']['code'] == 'model_not_found'"

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
