"""/docs in a real browser: headless Chromium (Debian's) loads the page, Swagger UI renders this
gateway's /openapi.json from assets served offline by the gateway itself, and a request sent from
the page ("Try it out", then "Execute") is answered by the gateway."""

from __future__ import annotations

import asyncio
import json
import shutil

import aiohttp
import pytest

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


async def _devtools(tmp_path) -> tuple[asyncio.subprocess.Process, int]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh test installs it)")
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
        f"--user-data-dir={tmp_path / 'chromium'}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    active = tmp_path / "chromium" / "DevToolsActivePort"
    for _ in range(300):
        if active.exists() and active.read_text().strip():
            return proc, int(active.read_text().splitlines()[0])
        await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("chromium did not open its DevTools port")


async def test_the_docs_page_renders_and_sends_a_request_from_the_browser(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path / "cfg"))
    page_url = str(client.make_url("/docs"))
    proc, port = await _devtools(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://127.0.0.1:{port}/json/new?{page_url}") as resp:
                target = await resp.json()
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                for attempt in range(1, 51):  # the page may still be loading: its context comes with it
                    await ws.send_json({"id": attempt, "method": "Runtime.evaluate", "params": {
                        "expression": TRY_IT, "awaitPromise": True, "returnByValue": True}})
                    while True:
                        message = json.loads((await asyncio.wait_for(ws.receive(), 60)).data)
                        if message.get("id") == attempt:
                            break
                    if "result" in message:
                        break
                    await asyncio.sleep(0.2)
        result = message["result"]
        assert "exceptionDetails" not in result, result
        shown = result["result"]["value"]
    finally:
        proc.kill()
        await proc.wait()
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
