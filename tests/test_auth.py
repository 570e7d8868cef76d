"""API keys: where they come from, the anonymous rule, per-key models, and that no key ever leaks."""

from __future__ import annotations

import hashlib
import logging

import pytest

from core.config.access import parse_auth
from core.config.yamlfile import load_yaml
from core.errors import ConfigError
from core.logs import JsonFormatter
from plugins.auth.client_address import client_address, parse_networks
from tests.support.configs import write_yaml
from tests.support.inprocess import serve, write_configs

EMB = "/v1/embeddings"
PLAIN = "guide-plain-key-1"
HASHED = "hashed-key-7f3a"
FROM_ENV = "env-key-91b2c"
FROM_FILE = "file-key-55d0e"
ALL_KEYS = (PLAIN, HASHED, FROM_ENV, FROM_FILE)


def _auth(tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("MAAS_TEST_KEY", FROM_ENV)
    secret = tmp_path / "secret-key"
    secret.write_text(FROM_FILE + "\n")  # as a Kubernetes Secret file usually is
    return {"api_keys": [
        PLAIN,
        "sha256:" + hashlib.sha256(HASHED.encode()).hexdigest(),
        {"name": "search-team", "key_env": "MAAS_TEST_KEY", "models": ["echo-emb"]},
        {"name": "batch-jobs", "key_file": str(secret)},
    ], "allow_anonymous_without_api_keys": False}


@pytest.fixture
async def client(aiohttp_client, tmp_path, monkeypatch):
    return await serve(aiohttp_client, write_configs(tmp_path / "cfg", auth=_auth(tmp_path, monkeypatch)))


def _body(key_header: dict | None = None, model: str = "echo-emb") -> dict:
    return {"json": {"model": model, "input": "hello"}, "headers": key_header or {}}


async def _error(resp, status: int, code: str) -> dict:
    assert resp.status == status, await resp.text()
    err = (await resp.json())["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code
    return err


@pytest.mark.parametrize("header", [
    {"Authorization": f"Bearer {PLAIN}"},
    {"Authorization": f"bearer   {PLAIN}  "},
    {"X-API-Key": PLAIN},
    {"Authorization": f"Bearer {HASHED}"},
    {"Authorization": f"Bearer {FROM_ENV}"},
    {"X-API-Key": FROM_FILE},
], ids=["bearer", "bearer-lowercase-spaces", "x-api-key", "sha256-entry", "key_env", "key_file"])
async def test_every_key_source_authenticates(client, header):
    resp = await client.post(EMB, **_body(header))
    assert resp.status == 200, await resp.text()


async def test_missing_unknown_and_malformed_keys_get_401(client):
    err = await _error(await client.post(EMB, **_body()), 401, "missing_api_key")
    assert err["type"] == "authentication_error"
    resp = await client.post(EMB, **_body({"Authorization": "Bearer not-a-key"}))
    await _error(resp, 401, "invalid_api_key")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    await _error(await client.post(EMB, **_body({"Authorization": f"Basic {PLAIN}"})), 401,
                 "invalid_authorization_header")
    # a wrong Authorization is not rescued by a right X-API-Key: one credential per request
    await _error(await client.post(EMB, **_body({"Authorization": "Bearer nope", "X-API-Key": PLAIN})),
                 401, "invalid_api_key")


async def test_per_key_model_list_gives_403_for_other_models(client):
    key = {"Authorization": f"Bearer {FROM_ENV}"}
    assert (await client.post(EMB, **_body(key, "echo-emb"))).status == 200
    err = await _error(await client.post(EMB, **_body(key, "echo-other")), 403, "model_not_allowed")
    assert err["param"] == "model"
    # a key without a list may call every model
    assert (await client.post(EMB, **_body({"X-API-Key": PLAIN}, "echo-other"))).status == 200


ANONYMOUS_RULE = [
    # keys configured, flag, header sent, expected status
    ([], True, None, 200),
    ([], True, {"Authorization": "Bearer anything"}, 200),  # nothing to check a key against
    ([], False, None, 401),
    ([], False, {"Authorization": "Bearer anything"}, 401),
    ([PLAIN], True, None, 401),  # the flag only applies while no key is configured
    ([PLAIN], True, {"Authorization": "Bearer wrong"}, 401),
    ([PLAIN], True, {"Authorization": f"Bearer {PLAIN}"}, 200),
    ([PLAIN], False, None, 401),
]


@pytest.mark.parametrize("keys,flag,header,status", ANONYMOUS_RULE)
async def test_anonymous_rule(aiohttp_client, tmp_path, keys, flag, header, status):
    client = await serve(aiohttp_client, write_configs(
        tmp_path, auth={"api_keys": keys, "allow_anonymous_without_api_keys": flag}))
    resp = await client.post(EMB, **_body(header))
    assert resp.status == status, await resp.text()


def test_anonymous_is_refused_when_the_flag_is_absent(tmp_path):
    write_yaml(tmp_path / "auth.yaml", {"api_keys": []})
    assert parse_auth(load_yaml(tmp_path / "auth.yaml")[0]).anonymous_allowed is False


@pytest.mark.parametrize("entry,message", [
    ({"name": "a", "key_env": "MAAS_TEST_UNSET_VARIABLE"}, "MAAS_TEST_UNSET_VARIABLE is not set"),
    ({"name": "a", "key_file": "/nonexistent/key"}, "cannot read key file"),
    ({"name": "a", "key": "k1", "key_env": "X"}, "exactly one of"),
    ("sha256:abc", "64 hex digits"),
    ({"name": "anonymous", "key": "k1"}, "not 'anonymous'"),
    ({"key": "k1", "scope": "all"}, "unknown field 'scope'"),
], ids=["unset-env", "missing-file", "two-sources", "short-digest", "reserved-name", "unknown-field"])
def test_bad_key_entries_name_file_and_line(tmp_path, entry, message):
    write_yaml(tmp_path / "auth.yaml", {"api_keys": ["first-key", entry]})
    with pytest.raises(ConfigError, match=message) as info:
        parse_auth(load_yaml(tmp_path / "auth.yaml")[0])
    assert info.value.file == str(tmp_path / "auth.yaml")
    assert info.value.line is not None and info.value.line >= 2


def test_duplicate_keys_are_rejected_without_showing_them(tmp_path):
    digest = hashlib.sha256(b"dup-secret-key").hexdigest()
    write_yaml(tmp_path / "auth.yaml", {"api_keys": ["dup-secret-key", f"sha256:{digest}"]})
    with pytest.raises(ConfigError, match=r"api_keys\[1\] is the same key as api_keys\[0\]") as info:
        parse_auth(load_yaml(tmp_path / "auth.yaml")[0])
    assert "dup-secret-key" not in str(info.value)


def test_a_key_and_its_digest_get_the_same_default_name(tmp_path):
    digest = hashlib.sha256(PLAIN.encode()).hexdigest()
    write_yaml(tmp_path / "a.yaml", {"api_keys": [PLAIN]})
    write_yaml(tmp_path / "b.yaml", {"api_keys": [f"sha256:{digest}"]})
    a = parse_auth(load_yaml(tmp_path / "a.yaml")[0]).keys[0]
    b = parse_auth(load_yaml(tmp_path / "b.yaml")[0]).keys[0]
    assert a.name == b.name == f"key-{digest[:8]}"
    assert PLAIN not in repr(a)


async def test_no_key_appears_in_logs_metrics_or_errors(aiohttp_client, tmp_path, monkeypatch):
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    formatter = JsonFormatter()
    handler.emit = lambda record: records.append(formatter.format(record))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        limits = {"default": {"capacity": 2, "refill_rate": 0.001},
                  "per_api_key": {PLAIN: {"capacity": 1, "refill_rate": 0.001},  # keyed by the key itself
                                  "unknown-plaintext-key-x": {"capacity": 1, "refill_rate": 1}}}
        settings = write_configs(tmp_path / "cfg", auth=_auth(tmp_path, monkeypatch), limits=limits)
        client = await serve(aiohttp_client, settings)
        bodies = []
        for key in (*ALL_KEYS, *ALL_KEYS, "unknown-plaintext-key-x"):
            for header in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
                resp = await client.post(EMB, **_body(header, "echo-other"))
                bodies.append(f"{resp.status} {dict(resp.headers)} {await resp.text()}")
        statuses = {b.split()[0] for b in bodies}
        assert {"200", "401", "403", "429"} <= statuses  # every path that could leak was taken
        metrics = await (await client.get("/metrics")).text()
        assert 'maas_rate_limited_total{caller="key-' in metrics
        assert 'maas_rate_limited_total{caller="batch-jobs"' in metrics
        assert 'maas_auth_failures_total{reason="invalid_api_key"}' in metrics
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    haystack = "\n".join(records + bodies + [metrics])
    assert "per_api_key entry matches no API key" in haystack  # the unknown entry was reported ...
    for secret in (*ALL_KEYS, "unknown-plaintext-key-x"):
        assert secret not in haystack  # ... without naming it


def test_client_address_trusts_forwarding_headers_only_from_trusted_proxies():
    nginx = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    forged = {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "198.51.100.1"}
    assert client_address("192.0.2.5", forged, nginx) == "192.0.2.5"  # not a proxy: headers ignored
    assert client_address("192.0.2.5", forged, ()) == "192.0.2.5"
    assert client_address("127.0.0.1", forged, nginx) == "203.0.113.9"  # X-Real-IP from Nginx
    chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}
    assert client_address("10.0.0.2", chain, nginx) == "203.0.113.7"  # rightmost untrusted hop
    assert client_address("10.0.0.2", {"X-Forwarded-For": "garbage, 10.1.1.1"}, nginx) == "10.0.0.2"
    with pytest.raises(ConfigError, match="ROUTER_TRUSTED_PROXIES"):
        parse_networks(["nginx.local"])


async def test_a_caller_without_a_key_is_refused_before_its_body_is_parsed(client):
    # Malformed JSON without a key: 401, not 400; the body is never read or parsed.
    resp = await client.post(EMB, data=b"{not json", headers={"Content-Type": "application/json"})
    await _error(resp, 401, "missing_api_key")
    resp = await client.post(EMB, data=b"{not json", headers={"Authorization": f"Bearer {PLAIN}",
                                                              "Content-Type": "application/json"})
    assert resp.status == 400


def test_a_key_is_found_by_its_name_as_by_its_secret(tmp_path):
    """A bulk job's owner is looked up by name (one dict lookup per line, however many keys)."""
    keys = [{"key": f"sk-name-{i:04d}-0123456789abcdef", "name": f"team-{i}"} for i in range(50)]
    write_yaml(tmp_path / "auth.yaml", {"api_keys": keys})
    auth = parse_auth(load_yaml(tmp_path / "auth.yaml")[0])
    for i in (0, 17, 49):
        assert auth.named(f"team-{i}") is auth.find(f"sk-name-{i:04d}-0123456789abcdef")
        assert auth.named(f"team-{i}").name == f"team-{i}"
    assert auth.named("team-50") is None and auth.named("") is None
