"""A small OpenAI-compatible server for tests: embeddings and rerank, with a key and faults.

Run as ``python -m tests.support.openai_stub --port P [--key K] [--name N]``. Vectors are a
deterministic function of the text (8 dimensions, unit length), so a test can compute what
the server would answer. The requested model name picks a fault:

``malformed`` (200 with broken JSON), ``short`` (one vector too few), ``slow`` (sleeps 30 s),
``error-infinity`` / ``error-fastapi`` / ``error-flat`` (400/422/400 in each dialect),
``overloaded`` (503), ``crash`` (500), ``narrow`` (7-wide vectors), ``not-finite`` (a NaN in each
vector), ``drift`` (8 wide, then 9 wide); any other name answers normally.

``GET /_seen`` returns the X-Request-IDs received, the number of calls and the server's name.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import zlib

import numpy as np
import orjson
from aiohttp import web

DIM = 8


def stub_vector(text: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _json(body: object, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def make_app(key: str | None, name: str) -> web.Application:
    seen: dict = {"request_ids": [], "calls": 0, "name": name}

    async def guard(request: web.Request) -> tuple[dict | None, web.Response | None]:
        seen["calls"] += 1
        seen["request_ids"].append(request.headers.get("X-Request-ID"))
        if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            # Like some real APIs, echo the key it got: the gateway must not pass that on.
            return None, _json({"error": {"message": f"Incorrect API key provided: {sent}",
                                          "type": "invalid_request_error", "code": "invalid_api_key"}}, 401)
        body = orjson.loads(await request.read())
        fault = _fault(str(body.get("model", "")))
        if fault is not None:
            return None, await fault
        return body, None

    async def embeddings(request: web.Request) -> web.StreamResponse:
        body, fault = await guard(request)
        if fault is not None:
            return fault
        if body["model"] == "malformed":
            return web.Response(body=b'{"object": "list", "data": [', content_type="application/json")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        texts = [t if isinstance(t, str) else " ".join(map(str, t)) for t in inputs]
        vecs = [stub_vector(t) for t in texts]
        if body["model"] == "short":
            vecs = vecs[:-1]
        if body["model"] == "narrow":  # 7 wide whatever the model is said to be
            vecs = [v[:7] for v in vecs]
        if body["model"] == "not-finite":
            vecs = [np.where(np.arange(DIM) == 3, np.nan, v).astype(np.float32) for v in vecs]
        if body["model"] == "drift":  # 8 wide on the first call, 9 wide after it
            seen["drift"] = seen.get("drift", 0) + 1
            if seen["drift"] > 1:
                vecs = [np.append(v, np.float32(0.5)) for v in vecs]
        b64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if b64 else v.tolist()}
                for i, v in enumerate(vecs)]
        answer = {"object": "list", "data": data, "model": body["model"]}
        if body["model"] != "no-usage":  # the stub counts a token per word: easy to tell from a tokenizer's
            answer["usage"] = {"prompt_tokens": sum(len(t.split()) for t in texts), "total_tokens": 0}
        return _json(answer)

    async def rerank(request: web.Request) -> web.StreamResponse:
        body, fault = await guard(request)
        if fault is not None:
            return fault
        q = stub_vector(body["query"])
        scores = [float(q @ stub_vector(d)) for d in body["documents"]]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return _json({"results": [{"index": i, "relevance_score": scores[i]} for i in order],
                      "model": body["model"], "usage": {"prompt_tokens": len(scores), "total_tokens": 0}})

    async def seen_handler(request: web.Request) -> web.Response:
        return _json(seen)

    app = web.Application()
    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/embeddings", embeddings)
        app.router.add_post(prefix + "/rerank", rerank)
    app.router.add_get("/_seen", seen_handler)
    app.router.add_get("/health", seen_handler)
    return app


async def _slow() -> web.Response:
    await asyncio.sleep(30)
    return _json({})


async def _const(response: web.Response) -> web.Response:
    return response


def _fault(model: str):
    faults = {
        "slow": _slow,
        "error-infinity": lambda: _const(_json({"error": {"message": "ModelNotDeployedError: no such thing",
                                                          "type": None, "param": None, "code": 400}}, 400)),
        "error-fastapi": lambda: _const(_json({"detail": [{"type": "too_long", "loc": ["body", "input"],
                                                           "msg": "List should have at most 4 items"}]}, 422)),
        "error-flat": lambda: _const(_json({"message": "input is too long for this model"}, 400)),
        "overloaded": lambda: _const(_json({"detail": "busy"}, 503, {"Retry-After": "3"})),
        "crash": lambda: _const(web.Response(text="Internal Server Error", status=500)),
    }
    make = faults.get(model)
    return make() if make else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key")
    parser.add_argument("--name", default="stub")
    args = parser.parse_args()
    web.run_app(make_app(args.key, args.name), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
