"""The floor for any aiohttp gateway: a bare aiohttp + uvloop proxy, one pooled client session.

``--mode raw`` forwards the upstream's bytes untouched; ``--mode json`` also parses the request
and the answer and serialises it again (orjson), the least a gateway that checks what it
forwards has to do. The router is compared with these, as with Nginx and LiteLLM.

    python -m bench.passthrough --port 8001 --upstream http://127.0.0.1:8002 --mode json
"""

from __future__ import annotations

import argparse

import aiohttp
import orjson
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


def create_app(upstream: str, mode: str) -> web.Application:
    app = web.Application()

    async def session_ctx(app: web.Application):
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        if mode == "json":
            body = orjson.dumps(orjson.loads(body))
        async with request.app[SESSION].post(upstream + request.path, data=body,
                                             headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.read()
            status = resp.status
        if mode == "json":
            answer = orjson.dumps(orjson.loads(answer))
        return web.Response(body=answer, status=status, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/health", health)
    app.router.add_post("/{tail:.*}", forward)
    return app


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--mode", choices=("raw", "json"), default="raw")
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    web.run_app(create_app(args.upstream.rstrip("/"), args.mode), host=args.host, port=args.port,
                access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
