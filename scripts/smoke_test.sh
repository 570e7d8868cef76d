#!/usr/bin/env bash
# Smoke test of a running gateway: the deployment guide's checks, each one asserted.
#
#   ./scripts/smoke_test.sh [BASE_URL]          (default: $MAAS_BASE_URL or http://localhost:8085)
#
# Environment:
#   MAAS_API_KEY             sent as "Authorization: Bearer ..." when set (never printed); then a
#                            request without it must be refused with 401
#   MAAS_SMOKE_EMBED_MODELS  embedding models to call, each MODEL:DIMENSIONS (default: every embedding
#                            model the gateway lists in /v1/models, with the width /v1/models/{id} gives)
#   MAAS_SMOKE_EMBED_MODEL   one embedding model instead, with MAAS_SMOKE_EMBED_DIM its vector length
#   MAAS_SMOKE_REQUIRE       models that must be listed, e.g. the production routing's
#                            "bge-m3 multilingual-e5-large frida rerank-base"
#   MAAS_SMOKE_RERANK_MODEL  rerank model to call (default: the first the gateway lists); empty skips it
#   CURL_CA_BUNDLE           CA file for an https:// URL with a private CA (read by curl)
# Exits 0 when every check passes, 1 when any fails (each failure shows the response).
set -euo pipefail

BASE=${1:-${MAAS_BASE_URL:-http://localhost:8085}}
BASE=${BASE%/}
PY=${PYTHON:-python3}

auth=()
if [ -n "${MAAS_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer ${MAAS_API_KEY}"); fi

# served KIND: "MODEL:DIMENSIONS" (embeddings) or "MODEL" (rerank) for each model /v1/models lists.
served() {
  curl -sS --max-time 30 "${auth[@]}" "$BASE/v1/models" 2>/dev/null | "$PY" -c '
import json, sys, urllib.request
kind, base, headers = sys.argv[1], sys.argv[2], dict(h.split(": ", 1) for h in sys.argv[3:])
for m in json.load(sys.stdin).get("data", []):
    if m.get("type") != kind:
        continue
    if kind == "rerank":
        print(m["id"]); continue
    req = urllib.request.Request(base + "/v1/models/" + m["id"], headers=headers)
    detail = json.load(urllib.request.urlopen(req, timeout=30))
    print(m["id"] + ":" + str(detail.get("dimensions")))
' "$1" "$BASE" ${MAAS_API_KEY:+"Authorization: Bearer ${MAAS_API_KEY}"} || true
}

if [ -n "${MAAS_SMOKE_EMBED_MODEL:-}" ]; then
  EMBED_MODELS="${MAAS_SMOKE_EMBED_MODEL}:${MAAS_SMOKE_EMBED_DIM:-1024}"
else
  EMBED_MODELS=${MAAS_SMOKE_EMBED_MODELS:-$(served embeddings | tr '\n' ' ')}
fi
if [ -z "${MAAS_SMOKE_RERANK_MODEL+set}" ]; then
  RERANK_MODEL=$(served rerank | head -n 1)
else
  RERANK_MODEL=$MAAS_SMOKE_RERANK_MODEL
fi

body=$(mktemp)
trap 'rm -f "$body"' EXIT
failures=0

# call METHOD PATH [JSON]: the status code on stdout, the body in $body. NOAUTH=1 sends no key.
call() {
  local method=$1 path=$2 data=${3:-}
  local args=(-sS -o "$body" -w '%{http_code}' --max-time 60 -X "$method")
  if [ -z "${NOAUTH:-}" ]; then args+=("${auth[@]}"); fi
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
if [ -z "$EMBED_MODELS" ]; then
  echo "FAIL the gateway lists no embedding model (or /v1/models could not be read)"
  failures=$((failures + 1))
fi
for model in ${MAAS_SMOKE_REQUIRE:-}; do
  check "v1/models lists $model (required)" 200 "$(call GET /v1/models)" \
    "'$model' in [m['id'] for m in r['data']]"
done
for entry in $EMBED_MODELS; do
  model=${entry%%:*} dim=${entry##*:}
  check "v1/models lists $model" 200 "$(call GET /v1/models)" \
    "r['object'] == 'list' and '$model' in [m['id'] for m in r['data']]"
  if [ "$dim" = None ] || [ "$dim" = "$model" ]; then  # the gateway does not say the width
    check "v1/embeddings $model answers a vector" 200 \
      "$(call POST /v1/embeddings "{\"model\": \"$model\", \"input\": \"test\"}")" \
      "len(r['data'][0]['embedding']) > 0 and r['usage']['prompt_tokens'] > 0"
    continue
  fi
  check "v1/embeddings $model has $dim dimensions" 200 \
    "$(call POST /v1/embeddings "{\"model\": \"$model\", \"input\": \"test\"}")" \
    "len(r['data'][0]['embedding']) == $dim and r['usage']['prompt_tokens'] > 0"
done
first_model=${EMBED_MODELS%%:*}
if [ -n "${MAAS_API_KEY:-}" ]; then
  check "a request without a key is refused" 401 \
    "$(NOAUTH=1 call POST /v1/embeddings "{\"model\": \"$first_model\", \"input\": \"test\"}")" \
    "r['error']['type'] == 'authentication_error'"
fi
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
