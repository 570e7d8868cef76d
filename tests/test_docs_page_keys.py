"""/docs with keys configured, in a real browser: the page renders the document without a key (it
names no model), and after Authorize it fetches the document again with the key and shows that
key's models; Logout takes them away again."""

from __future__ import annotations

from tests.support.browser import evaluate_on_page
from tests.support.inprocess import serve, write_configs

KEY = "docs-page-key-0123456789abcdef"
ROUTING = {"embeddings": [{"model": "mine-embed", "upstream": {"type": "echo", "dim": 4}},
                          {"model": "theirs-embed", "upstream": {"type": "echo", "dim": 4}}]}
AUTH = {"api_keys": [{"name": "docs", "key": KEY, "models": ["mine-embed"]}],
        "allow_anonymous_without_api_keys": False}

# Runs in the page: the document's model names before Authorize, after it, and after Logout.
SCOPED = """
(async () => {
  const wait = (check) => new Promise((done, fail) => {
    let left = 300;
    const tick = setInterval(() => {
      if (check()) { clearInterval(tick); done(true); }
      else if (--left === 0) { clearInterval(tick); fail(new Error("timed out: " + check)); }
    }, 100);
  });
  const text = () => JSON.stringify(window.ui.specSelectors.specJson().toJS());
  const names = () => ["mine-embed", "theirs-embed"].filter((n) => text().includes(n));
  await wait(() => window.ui && window.ui.specSelectors.specJson().get("paths"));
  await wait(() => document.querySelector(".info .title"));
  const before = names();
  window.ui.authActions.authorize({bearer: {name: "bearer", schema: {type: "http", scheme: "bearer"},
                                            value: "KEY"}});
  await wait(() => names().length > 0);
  const after = names();
  window.ui.authActions.logout(["bearer"]);
  await wait(() => names().length === 0);
  return {before, after, after_logout: names(), title: document.querySelector(".info .title").textContent};
})()
""".replace("KEY", KEY)


async def test_the_page_shows_the_keys_models_once_authorized(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path / "cfg", routing=ROUTING, auth=AUTH))
    page_url = str(client.make_url("/docs"))
    shown = await evaluate_on_page(tmp_path, page_url, SCOPED, timeout_s=90)
    assert "Quadrate MAAS Embeddings" in shown["title"]  # the unscoped document renders
    assert shown["before"] == [] and shown["after"] == ["mine-embed"] and shown["after_logout"] == []
