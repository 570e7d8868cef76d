"""A config file cannot stall or swell the gateway: a file over ROUTER_MAX_CONFIG_BYTES is
refused before it is parsed, a list or mapping past ROUTER_MAX_CONFIG_ITEMS as it is parsed, an
alias bomb before anything walks it, each with file and line and a short message; and a reload
parses and validates off the event loop, so a health check is answered meanwhile (order, never
timings) and the last good config keeps serving."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from core.config import load_config
from core.errors import ConfigError
from core.gateway import Gateway
from tests.support.inprocess import echo_plugin_manager, gateway_of, serve, write_configs

LINE = "# " + "x" * 1022 + "\n"  # a 1 KiB comment line


def _bomb(levels: int) -> tuple[str, str]:
    """A 'billion laughs' under a key ``anchors``: ``levels`` levels of nine aliases each
    (9**levels values) in about 1 KB; and the name of its top anchor."""
    names = "abcdefghijklmnop"
    text = 'anchors:\n  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        text += f"  {names[i]}: &{names[i]} [" + ",".join([f"*{names[i - 1]}"] * 9) + "]\n"
    return text, names[levels - 1]


def _append(path: str, text: str) -> None:
    with open(path, "a") as out:
        out.write(text)


def test_an_alias_bomb_in_an_integer_field_is_refused_with_file_line_and_a_short_message(tmp_path):
    settings = write_configs(tmp_path, routing={})
    bomb, top = _bomb(9)
    with open(settings.routing_path, "w") as out:
        out.write(bomb + f"embeddings:\n  - model: m\n    upstream: {{type: echo, timeout_ms: *{top}}}\n")
    assert len(open(settings.routing_path).read()) < 2048
    with pytest.raises(ConfigError) as caught:
        load_config(settings)
    error = caught.value
    assert error.file == settings.routing_path and error.line is not None
    assert "aliases expand" in error.message and len(str(error)) < 300


def test_a_huge_list_is_refused_where_it_starts(tmp_path):
    settings = write_configs(tmp_path)
    lines = open(settings.routing_path).read().count("\n")
    _append(settings.routing_path, "feature_flags:\n" + "".join(f"  - flag{i}\n" for i in range(50_000)))
    with pytest.raises(ConfigError) as caught:
        load_config(settings)
    assert caught.value.file == settings.routing_path and caught.value.line == lines + 2  # its first item
    assert "more than 10000 entries" in caught.value.message and "ROUTER_MAX_CONFIG_ITEMS" in caught.value.message
    with pytest.raises(ConfigError, match="more than 10 entries"):
        load_config(replace(settings, max_config_items=10))


def test_a_50_mb_file_is_refused_before_it_is_parsed(tmp_path):
    settings = write_configs(tmp_path)
    _append(settings.routing_path, LINE * (50 * 1024))
    with pytest.raises(ConfigError) as caught:
        load_config(settings)
    assert "ROUTER_MAX_CONFIG_BYTES" in caught.value.message and caught.value.file == settings.routing_path


def test_a_long_value_in_an_error_is_shown_by_its_start_only(tmp_path):
    settings = write_configs(tmp_path, routing={"embeddings": [
        {"model": "m", "upstream": {"type": "echo", "dim": "x" * 1_000_000}}]})
    with pytest.raises(ConfigError) as caught:
        Gateway(settings, echo_plugin_manager()).validate()
    assert "'dim'" in str(caught.value) and "xxx..." in str(caught.value) and len(str(caught.value)) < 400


async def _reload_beside_health(client) -> tuple[BaseException | None, int]:
    """Reload and ping /health/live until the reload ends; return what the reload raised and how
    many health checks were answered before it ended."""
    load = asyncio.ensure_future(gateway_of(client).load())
    answered = 0
    while not load.done():
        health = await client.get("/health/live")
        if health.status == 200 and not load.done():
            answered += 1
        await asyncio.sleep(0)
    return load.exception(), answered


@pytest.mark.parametrize("case", ["bomb", "huge list", "50 MB file"])
async def test_a_bad_reload_is_refused_and_the_last_good_config_keeps_serving(aiohttp_client, tmp_path, case):
    settings = write_configs(tmp_path)
    client = await serve(aiohttp_client, settings)
    serving = gateway_of(client).snapshot
    path = settings.routing_path
    if case == "bomb":
        _append(path, _bomb(10)[0])
    elif case == "huge list":
        _append(path, "feature_flags:\n" + "".join(f"  - flag{i}\n" for i in range(200_000)))
    else:
        _append(path, LINE * (50 * 1024))
    error, _ = await _reload_beside_health(client)
    assert isinstance(error, ConfigError) and error.file == path
    assert gateway_of(client).snapshot is serving
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": ["still served"]})
    assert resp.status == 200


async def test_a_reload_is_parsed_and_validated_off_the_event_loop(aiohttp_client, tmp_path):
    settings = write_configs(tmp_path)
    client = await serve(aiohttp_client, settings)
    serving = gateway_of(client).snapshot
    _append(settings.routing_path, LINE * 3500)  # valid, under the size limit, slow to parse
    error, answered = await _reload_beside_health(client)
    assert error is None and gateway_of(client).snapshot is not serving
    assert answered >= 1  # the swap is on the loop; the parsing was not
