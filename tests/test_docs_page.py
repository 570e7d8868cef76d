"""/docs in a real browser: headless Chromium (Debian's) loads the page, Swagger UI renders this
gateway's /openapi.json from assets served offline by the gateway itself, and a request sent from
the page ("Try it out", then "Execute") is answered by the gateway."""

from __future__ import annotations

from tests.support.browser import evaluate_on_page
from tests.support.inprocess import serve, write_configs

# Runs in the page: open the embeddings operation, put a body in, execute, read the status shown.
TRY_IT = """
(async () => {
  const wait = (find) => new Promise((done, fail) => {
    let left = 300;
    const tick = setInterval(() => {
      const found = find();
      if (found) { clearInterval(tick); done(found); }
      else if (--left === 0) { clearInterval(tick); fail(new Error("not found: " + find)); }
    }, 100);
  });
  const op = "#operations-embeddings-createEmbeddings";
  (await wait(() => document.querySelector(op + " .opblock-summary-control"))).click();
  const area = await wait(() => document.querySelector(op + " textarea.body-param__text"));
  const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set;
  setter.call(area, JSON.stringify({model: "echo-emb", input: "hello from the docs page"}));
  area.dispatchEvent(new Event("input", {bubbles: true}));
  (await wait(() => document.querySelector(op + " .execute"))).click();
  const status = await wait(() => document.querySelector(op + " .live-responses-table tbody .response-col_status"));
  const body = document.querySelector(op + " .live-responses-table .microlight");
  return {status: status.textContent.trim(), body: body ? body.textContent : "",
          title: document.querySelector(".info .title").textContent};
})()
"""


async def test_the_docs_page_renders_and_sends_a_request_from_the_browser(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path / "cfg"))
    page_url = str(client.make_url("/docs"))
    shown = await evaluate_on_page(tmp_path, page_url, TRY_IT)
    assert shown["status"] == "200", shown
    assert "Quadrate MAAS Embeddings" in shown["title"]
    assert '"object": "list"' in shown["body"] and '"model": "echo-emb"' in shown["body"]


async def test_the_page_and_its_assets_are_served_offline_and_nothing_else(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path / "cfg"))
    page = await (await client.get("/docs")).text()
    assert "/openapi.json" in page and "http" not in page.replace("<!doctype html>", "")  # no CDN, no host
    for name in ("swagger-ui.css", "swagger-ui-bundle.js"):
        resp = await client.get(f"/docs/assets/{name}")
        assert resp.status == 200 and len(await resp.read()) > 1000
    assert (await client.get("/docs/assets/..%2f__init__.py")).status == 404
    assert (await client.get("/docs/assets/swagger-editor.js")).status == 404  # only what the page loads
