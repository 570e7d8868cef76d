"""Headless Chromium (Debian's) driven over its DevTools protocol: open a page, evaluate a script
in it once the page has a context, and give back the script's value."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest


async def _devtools(tmp_path: Path) -> tuple[asyncio.subprocess.Process, int]:
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


async def evaluate_on_page(tmp_path: Path, page_url: str, expression: str, timeout_s: float = 60) -> Any:
    """Open ``page_url`` in a fresh headless Chromium and return the value of ``expression`` (a
    script whose promise is awaited), retried while the page is still loading."""
    proc, port = await _devtools(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://127.0.0.1:{port}/json/new?{page_url}") as resp:
                target = await resp.json()
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                for attempt in range(1, 51):  # the page may still be loading: its context comes with it
                    await ws.send_json({"id": attempt, "method": "Runtime.evaluate", "params": {
                        "expression": expression, "awaitPromise": True, "returnByValue": True}})
                    while True:
                        message = json.loads((await asyncio.wait_for(ws.receive(), timeout_s)).data)
                        if message.get("id") == attempt:
                            break
                    if "result" in message:
                        break
                    await asyncio.sleep(0.2)
        result = message["result"]
        assert "exceptionDetails" not in result, result
        return result["result"]["value"]
    finally:
        proc.kill()
        await proc.wait()
