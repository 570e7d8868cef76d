"""``/docs``: the interactive API page, Swagger UI over this gateway's own ``/openapi.json``.

The assets come from a PyPI package (``swagger-ui-py``, Swagger UI 5, which reads OpenAPI 3.1),
served from this process: the gateway runs offline, so no CDN. Only the few files the page loads
are served, by name. The page's Authorize button takes a key (Bearer or ``X-API-Key``, the
document's security schemes) and sends it with every request tried from the page, and with the
fetch of ``/openapi.json`` itself, which names only the models that key may call (fetched again
when the key changes); without a key the page shows the document naming none while keys exist.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aiohttp import web

ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "application/javascript",
          "favicon-32x32.png": "image/png"}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Quadrate MAAS Embeddings: API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    // The document names the models the key may call: the key goes with its fetch too, and the
    // document is fetched again when the key changes (Authorize, Logout) or was remembered.
    const keyHeaders = () => {
      const auth = window.ui ? window.ui.authSelectors.authorized().toJS() : {};
      if (auth.bearer && auth.bearer.value) return {"Authorization": "Bearer " + auth.bearer.value};
      if (auth.apiKey && auth.apiKey.value) return {"X-API-Key": auth.apiKey.value};
      return {};
    };
    const refetch = (action, system) => (...args) => {
      const out = action(...args);
      setTimeout(() => system.specActions.download(), 0);
      return out;
    };
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                                 persistAuthorization: true, tryItOutEnabled: true,
                                 requestInterceptor: (req) => {
                                   if (req.loadSpec) Object.assign(req.headers, keyHeaders());
                                   return req;
                                 },
                                 plugins: [() => ({statePlugins: {auth: {wrapActions: {
                                   authorize: refetch, logout: refetch}}}})],
                                 onComplete: () => {  // once: a key remembered from an earlier visit
                                   if (!window.keyedOnce && Object.keys(keyHeaders()).length) {
                                     window.keyedOnce = true;
                                     window.ui.specActions.download();
                                   }
                                 }});
  </script>
</body>
</html>
"""


def _folder() -> Path:
    spec = importlib.util.find_spec("swagger_ui")  # its files only: nothing of it is imported
    if spec is None or spec.origin is None:
        raise web.HTTPNotFound(reason="swagger-ui-py is not installed")
    return Path(spec.origin).parent / "static"


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", headers={"Cache-Control": "no-cache"})


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kind = ASSETS.get(name)
    if kind is None:
        raise web.HTTPNotFound()
    return web.FileResponse(_folder() / name, headers={"Content-Type": kind, "Cache-Control": "max-age=86400"})


def add_docs_routes(app: web.Application) -> None:
    app.router.add_get("/docs", page)
    app.router.add_get("/docs/assets/{name}", asset)
