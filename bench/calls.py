"""``python -m bench.calls [REV]``: the calls one request makes into the project's code, at this
checkout and at revision REV (default: ``bench.versus.reference()``: the newest release tag, else
62d297f), side by side and grouped by concern (scheduler, cache layer, dialect and codec, CORS, edge
and timeouts, width check, flow and chain, ...), with the calls into other Python code (aiohttp,
asyncio, prometheus_client) by package.

The scenario is ``tests/test_call_budget.py``'s (``tests.support.calls``): one embeddings and one
rerank call through the whole router on the ``echo`` adapter. Each tree is counted in its own
process, run from its own root, so REV's modules are the ones imported; the counting file is this
checkout's. Counts are exact (no timings), so one run is enough.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.versus import reference
from tests.support.processes import ROOT, base_env

_DRIVER = """
import asyncio, importlib.util, json, sys, tempfile
from pathlib import Path
sys.path.insert(0, ".")
spec = importlib.util.spec_from_file_location("maas_call_counts", sys.argv[1])
calls = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = calls
spec.loader.exec_module(calls)
runs = asyncio.run(calls.count_requests(Path(tempfile.mkdtemp(prefix="maas-calls-"))))
print(json.dumps({kind: [dict(c) for c in repeated] for kind, repeated in runs.items()}))
"""

# (concern, module prefixes), first match wins; a key is "module:qualname".
CONCERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("edge: the lean lane (or aiohttp's middleware), timeouts, access log, the answer",
     ("core.http", "core.lane", "core.answer", "core.ids", "core.serving", "core.logs")),
    ("CORS", ("core.cors",)),
    ("flow and chain", ("core.flow", "core.chain", "core.dispatcher", "core.gateway", "core.plugins",
                        "core.snapshot")),
    ("auth", ("plugins.auth", "core.config.access", "core.client_address")),
    ("rate limit", ("plugins.rate_limit", "core.ratelimit")),
    ("dialect and codec: parse, request kinds, render", ("core.dialects", "core.requests.embeddings",
                                                         "core.requests.rerank", "core.requests.texts",
                                                         "core.requests.common", "core.protocol", "core.vectors",
                                                         "plugins.parse", "plugins.codecs", "core.offload")),
    ("route and token limit", ("plugins.routing", "plugins.token_limit", "core.tokenization", "core.config.caps",
                               "core.requests.truncation")),
    ("cache layer", ("core.served.layers", "plugins.cache")),
    ("embedding space (X-Embedding-Space)", ("core.space",)),
    ("width check", ("core.served.widths",)),
    ("scheduler and served model", ("core.scheduling", "core.slots", "core.served", "core.batching", "core.coalescing",
                                    "core.metrics:QueueSeries")),
    ("adapter call", ("core.adapters", "plugins.invoke", "adapters")),
    ("deadlines: the served model's and the upstream attempt's", ("core.deadlines",)),
    ("metrics", ("core.metrics", "core.metric_series")),
)


def concern_of(key: str) -> str:
    for name, prefixes in CONCERNS:
        if any(key == p or key.startswith((p + ".", p + ":")) for p in prefixes):
            return name
    return "other"


def count_tree(tree: Path) -> dict[str, Counter[str]]:
    """The counts of one tree (the fewest seen over its repeated calls, per kind)."""
    proc = subprocess.run([sys.executable, "-c", _DRIVER, str(ROOT / "tests" / "support" / "calls.py")], cwd=tree,
                          env=base_env(PYTHONPATH=str(tree)), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"counting {tree} failed:\n{proc.stderr[-3000:]}")
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    return {kind: min((Counter(c) for c in repeated), key=lambda c: sum(c.values())) for kind, repeated in runs.items()}


def compare(base: dict[str, Counter[str]], head: dict[str, Counter[str]], rev: str) -> str:
    """Markdown: totals, then per concern the functions of either tree with both counts."""
    kinds = [k for k in head if "(other code)" not in k]
    out = [f"| request | {rev} | this checkout | × |", "|---|---|---|---|"]
    for kind in [*kinds, *(k for k in head if "(other code)" in k)]:
        b, h = sum(base.get(kind, Counter()).values()), sum(head[kind].values())
        out.append(f"| {kind} | {b} | {h} | {h / b:.2f} |" if b else f"| {kind} | – | {h} | – |")
    for kind in kinds:
        b_kind, h_kind = base.get(kind, Counter()), head[kind]
        groups: dict[str, list[str]] = {}
        for key in set(b_kind) | set(h_kind):
            groups.setdefault(concern_of(key), []).append(key)
        out += ["", f"### {kind}: calls by concern", "", f"| concern | {rev} | this checkout | added |",
                "|---|---|---|---|"]
        order = [name for name, _ in CONCERNS] + ["other"]
        for name in [n for n in order if n in groups]:
            b = sum(b_kind[k] for k in groups[name])
            h = sum(h_kind[k] for k in groups[name])
            out.append(f"| {name} | {b} | {h} | {h - b:+d} |")
        out += ["", f"<details><summary>{kind}: every function</summary>", "",
                f"| concern | function | {rev} | this checkout |", "|---|---|---|---|"]
        for name in [n for n in order if n in groups]:
            for key in sorted(groups[name]):
                out.append(f"| {name} | `{key}` | {b_kind[key] or ''} | {h_kind[key] or ''} |")
        out += ["", "</details>"]
    others = [k for k in head if "(other code)" in k]
    for kind in others:
        b_kind, h_kind = base.get(kind, Counter()), head[kind]
        out += ["", f"### {kind}: by package", "", f"| package | {rev} | this checkout |", "|---|---|---|"]
        for pkg in sorted(set(b_kind) | set(h_kind), key=lambda p: -h_kind[p]):
            if max(b_kind[pkg], h_kind[pkg]) >= 3:
                out.append(f"| {pkg} | {b_kind[pkg]} | {h_kind[pkg]} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__)
    parser.add_argument("rev", nargs="?", default=None, help="the revision to compare with (default: the newest "
                        "release tag, else 62d297f)")
    parser.add_argument("--tree", help="an existing checkout to count instead of a temporary worktree of REV")
    args = parser.parse_args(argv)
    rev = args.rev or (Path(args.tree).name if args.tree else reference())
    head = count_tree(ROOT)
    if args.tree:
        base = count_tree(Path(args.tree))
    else:
        tree = Path(tempfile.mkdtemp(prefix="maas-calls-")) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                       capture_output=True)
        try:
            base = count_tree(tree)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    print(compare(base, head, rev))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
