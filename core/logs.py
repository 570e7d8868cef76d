"""Structured JSON logs carrying the request id of the request being served.

Every line is one JSON object: ``ts``, ``level``, ``logger``, ``msg``, ``request_id`` (while a
request is being served) and the record's extra fields. The access log (``maas.access``, one
line per /v1 request) is the busiest: once ``setup_logging`` has installed the JSON stream
handler, ``AccessLog`` builds its lines without a ``LogRecord`` and writes them in one write at
most every ``FLUSH_S`` (sooner once ``FLUSH_LINES`` are waiting; all of them when the app stops),
as Envoy and Nginx's ``flush=`` buffer theirs: a write and a flush per request, or per event-loop
turn, cost the busiest path more than building the line. Elsewhere (the app embedded in another
program, tests capturing records) it logs through ``logging`` like any other logger.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
from typing import IO, Any

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

FLUSH_S = 0.05  # access lines wait at most this long for their write
FLUSH_LINES = 256  # or until this many wait (a few tens of KB: one write a pipe takes at once)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _Clock:
    """ISO-8601 UTC timestamps with milliseconds; the date part is formatted once a second."""

    __slots__ = ("_second", "_text", "_ms", "_stamp")

    def __init__(self) -> None:
        self._second, self._text, self._ms, self._stamp = -1, "", -1, ""

    def stamp(self, created: float) -> str:
        second = int(created)
        ms = int((created - second) * 1000)
        if second == self._second and ms == self._ms:  # a busy access log writes several lines a millisecond
            return self._stamp
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._ms, self._stamp = ms, f"{self._text}.{ms:03d}Z"
        return self._stamp


def _line(ts: str, level: str, logger: str, msg: str, fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ts": ts, "level": level, "logger": logger, "msg": msg}
    rid = request_id_var.get()
    if rid:
        out["request_id"] = rid
    out.update(fields)
    return out


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}
        out = _line(self._clock.stamp(record.created), record.levelname.lower(), record.name,
                    record.getMessage(), fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class AccessLog:
    """The ``maas.access`` lines; see the module docstring for the direct path."""

    def __init__(self, name: str = "maas.access") -> None:
        self.logger = logging.getLogger(name)
        self._stream: IO[bytes] | None = None
        self._clock = _Clock()
        self._pending: list[bytes] = []
        self._due: asyncio.TimerHandle | None = None  # the flush the pending lines wait for
        self._due_loop: asyncio.AbstractEventLoop | None = None

    def write_to(self, stream: IO[bytes] | None) -> None:
        """Write lines straight to ``stream`` (the JSON handler's), or through ``logging`` if None."""
        self.flush()
        self._stream = stream

    def info(self, msg: str, fields: dict[str, Any]) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        if self._stream is None:
            self.logger.info(msg, extra=fields)
            return
        self._add(_line(self._clock.stamp(time.time()), "info", self.logger.name, msg, fields))

    def request(self, method: str, path: str, status: int, started: float, extra: dict[str, Any] | None) -> None:
        """A request's line: ``msg`` "METHOD path status", then ``status``, ``path``, ``duration_ms``
        (since ``started``, on ``time.perf_counter``) and ``extra``; the dict of the line built once."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        now = time.perf_counter()
        msg = f"{method} {path} {status}"
        duration_ms = round((now - started) * 100000) / 100  # hundredths of a millisecond
        if self._stream is None:
            self.logger.info(msg, extra={"status": status, "path": path, "duration_ms": duration_ms, **(extra or {})})
            return
        rid = request_id_var.get()
        line: dict[str, Any] = {"ts": self._clock.stamp(time.time()), "level": "info", "logger": self.logger.name,
                                "msg": msg}
        if rid:
            line["request_id"] = rid
        line["status"], line["path"], line["duration_ms"] = status, path, duration_ms
        if extra:
            line.update(extra)
        self._add(line)

    def _add(self, line: dict[str, Any]) -> None:
        pending = self._pending
        pending.append(orjson.dumps(line, default=str) + b"\n")
        if len(pending) >= FLUSH_LINES:
            self.flush()
        elif self._due is None or self._due_loop is None or self._due_loop.is_closed():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop: write now
                self.flush()
                return
            self._due, self._due_loop = loop.call_later(FLUSH_S, self.flush), loop

    def flush(self) -> None:
        due, loop, self._due, self._due_loop = self._due, self._due_loop, None, None
        if due is not None and loop is not None and not loop.is_closed():
            due.cancel()
        if not self._pending or self._stream is None:
            return
        lines, self._pending = b"".join(self._pending), []
        try:
            self._stream.write(lines)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or full stream must not fail requests
            pass


access_log = AccessLog()


def setup_logging(level: str = "INFO") -> None:
    # The JSON lines carry no source file, thread or process: not collecting them spares every
    # record a stack walk and three lookups.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Access lines go to the same stream, underneath its text layer (which logging flushes per record).
    access_log.write_to(getattr(sys.stderr, "buffer", None))
