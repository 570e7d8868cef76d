"""The work one request does, counted: the calls into the project's own code (``core/``,
``plugins/``, ``adapters/``) that one embeddings call and one rerank call make through the whole
router (the HTTP edge: the lean lane where the tree has one, else aiohttp's app and its
middleware; the chain, the served model and its scheduler, the codec's render), on the fast
``echo`` adapter.

Counting calls rather than timing them makes the figure exact: the same code path gives the same
count on any machine, under any load. ``tests/test_call_budget.py`` holds it against a budget
kept in the repository; ``python -m bench.calls`` counts another revision the same way.

Only the scenario's public surface is used (``create_app``, ``tests.support.inprocess``,
``tests.support.echo``), and project modules are imported only when the scenario runs, so the same
file counts an older checkout too: run from that checkout's root, its ``core`` is the one imported.
"""

from __future__ import annotations

import asyncio
import dis
import io
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

OWN = ("core", "plugins", "adapters")  # the project's code: what the budget counts
# Tasks of the app's own that run beside requests (on a timer or a file event): never counted.
BACKGROUND_TASKS = frozenset({"loop-lag-watchdog", "config-watcher", "config-events", "initial-config-load"})
# The deadline wheel's timer (``core.deadlines``): one tick every few milliseconds for every block in
# flight, so whether a request sees a tick, or finds the wheel stopped and starts it, depends on
# how long it took, not on what it did. Not counted.
TIMER_DRIVEN = frozenset({"core.deadlines:_Wheel._tick", "core.deadlines:_Wheel._arm"})
# Comprehensions are functions before Python 3.12 and inlined from then on: not counted, so one
# budget holds on either.
_INLINED = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>"})
_RESUMABLE = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
_SKIP: Any = object()

KEY = "budget-test-key-0001"
TEXT = "The quick brown fox jumps over the lazy dog"
ROUTING = {"embeddings": [{"model": "echo-emb", "upstream": {"type": "echo"}}],
           "rerank": [{"model": "echo-rerank", "upstream": {"type": "echo"}}]}
AUTH = {"api_keys": [{"name": "budget", "key": KEY}], "allow_anonymous_without_api_keys": False}
LIMITS = {"default": {"capacity": 1_000_000, "refill_rate": 1_000_000}}  # the token bucket is on, never empty
REQUESTS = {
    "embeddings": ("/v1/embeddings", {"model": "echo-emb", "input": TEXT}),
    "rerank": ("/v1/rerank", {"model": "echo-rerank", "query": "a fox", "documents": [TEXT, "a dog", "a cat"]}),
}


class CallCounter:
    """``sys.setprofile`` counting every *start* of a function whose code lives under ``root``'s
    own packages, as ``module:qualname``; calls into other Python code are counted by top-level
    package in ``others`` (for reading, not for the budget: library internals vary with timing).

    A coroutine or generator counts once, when it starts: each resumption after an ``await`` is
    the event loop's scheduling, not a call. Code running in ``BACKGROUND_TASKS`` is not counted.
    Only the thread that enters the counter is seen (work sent to a thread pool is not).
    """

    def __init__(self, root: Path) -> None:
        self.prefixes = tuple(str(root / name) + "/" for name in OWN)
        self.root = str(root) + "/"
        self.counts: Counter[str] = Counter()
        self.others: Counter[str] = Counter()
        self._keys: dict[CodeType, tuple[Any, bool]] = {}
        self._starts: dict[CodeType, int] = {}

    def _key(self, frame: FrameType) -> tuple[Any, bool]:
        code = frame.f_code
        if code.co_name in _INLINED:
            return _SKIP, False
        path = code.co_filename
        if path == __file__:  # the counter's own helpers (the steady clock)
            return _SKIP, False
        if path.startswith(self.prefixes):
            module = path[len(self.root):].removesuffix(".py").replace("/", ".").removesuffix(".__init__")
            key = f"{module}:{code.co_qualname}"
            return (_SKIP, False) if key in TIMER_DRIVEN else (key, True)
        return str(frame.f_globals.get("__name__", "?")).partition(".")[0], False

    def _first_resume(self, code: CodeType) -> int:
        """The offset of a coroutine's first RESUME: at a start it has not gone past it."""
        start = self._starts.get(code)
        if start is None:
            start = next((i.offset for i in dis.get_instructions(code) if i.opname == "RESUME"), 0)
            self._starts[code] = start
        return start

    def _hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        known = self._keys.get(code)
        if known is None:
            known = self._keys[code] = self._key(frame)
        key, own = known
        if key is _SKIP:
            return
        if code.co_flags & _RESUMABLE and frame.f_lasti > self._first_resume(code):
            return  # resumed after an await or a yield
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        if task is not None and task.get_name() in BACKGROUND_TASKS:
            return
        (self.counts if own else self.others)[key] += 1

    def __enter__(self) -> CallCounter:
        if sys.getprofile() is not None:
            raise RuntimeError("another profiler is set: the counts would be wrong")
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


def per_module(counts: Counter[str]) -> dict[str, int]:
    modules: Counter[str] = Counter()
    for key, n in counts.items():
        modules[key.partition(":")[0]] += n
    return dict(sorted(modules.items()))


class _SteadyClock:
    """Every call a model makes takes one millisecond: what the scheduler's capacity model fits
    (and whether it leaves a batch out as an outlier, a branch of its own) never depends on
    how busy the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001  # each reading 1 ms after the last: every call takes 1 ms
        return self.now


def _steady_schedulers(gateway: Any) -> None:
    """Pin the clock of every model's scheduler (a tree without schedulers has none to pin)."""
    services = getattr(gateway, "services", None)
    for scheduler in getattr(getattr(services, "schedulers", None), "schedulers", ()):
        scheduler._clock = _SteadyClock()


@contextmanager
def _access_log_as_served() -> Iterator[None]:
    """The access log as a served router has it (``setup_logging``: lines built and written straight
    to a stream), whatever another test left, so the count is the production path's and the same
    alone or in the full suite. Its write, one for the lines of ``FLUSH_S``, is no one request's
    work: it waits here until ``count_requests`` flushes between requests, so a slow request never
    has it counted."""
    from core import logs
    from core.logs import access_log

    logger = logging.getLogger(access_log.logger.name)
    stream, level, flush_s = getattr(access_log, "_stream", None), logger.level, getattr(logs, "FLUSH_S", None)
    access_log.write_to(io.BytesIO())
    logger.setLevel(logging.INFO)
    if flush_s is not None:
        logs.FLUSH_S = 3600.0
    try:
        yield
    finally:
        if flush_s is not None:
            logs.FLUSH_S = flush_s
        access_log.write_to(stream)
        logger.setLevel(level)


async def count_requests(work: Path, *, warmups: int = 20, repeats: int = 2) -> dict[str, list[Counter[str]]]:
    """Per request kind, the counts of ``repeats`` calls made after ``warmups`` of the same call
    (first-call caches, lazy imports, the scheduler made on first use, its capacity model past its
    warm-up: the steady state of a serving router), on an app built fresh here from the checkout
    on ``sys.path``."""
    from aiohttp.test_utils import TestClient, TestServer

    import core
    from core.app import create_app
    from core.http import GATEWAY
    from core.logs import access_log
    from tests.support.inprocess import echo_plugin_manager, write_configs

    root = Path(core.__file__).resolve().parent.parent
    settings = write_configs(work, routing=ROUTING, auth=AUTH, limits=LIMITS)
    app = create_app(settings, echo_plugin_manager())
    headers = {"Authorization": f"Bearer {KEY}"}
    out: dict[str, list[Counter[str]]] = {}
    try:  # the API port as ``maas serve`` opens it: with the lean lane where the tree has one
        from tests.support.lane_server import LaneTestServer
        server: TestServer = LaneTestServer(app)
    except ImportError:
        server = TestServer(app)
    with _access_log_as_served():
        async with TestClient(server) as client:
            for _ in range(12000):
                if app[GATEWAY].ready:
                    break
                await asyncio.sleep(0.01)
            else:
                raise TimeoutError("the gateway did not become ready")
            for kind, (path, body) in REQUESTS.items():
                out[kind] = []
                for i in range(warmups + repeats):
                    if i == 1:  # the first call made the model's scheduler
                        _steady_schedulers(app[GATEWAY])
                    counter = CallCounter(root)
                    with counter if i >= warmups else _nothing():
                        async with client.post(path, json=body, headers=headers) as resp:
                            answer = await resp.read()
                        await asyncio.sleep(0)  # what the answer scheduled right after it
                    access_log.flush()  # (see ``_access_log_as_served``)
                    if resp.status != 200:
                        raise RuntimeError(f"{path} answered {resp.status}: {answer[:300]!r}")
                    if i >= warmups:
                        out[kind].append(counter.counts)
                        out.setdefault(f"{kind} (other code)", []).append(counter.others)
    return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield
