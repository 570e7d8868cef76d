"""One connection in the lean lane (``core.lane``): its requests, answers, timers and hand-over."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp.tcp_helpers import tcp_keepalive, tcp_nodelay
from multidict import CIMultiDict

from core.answer import head as answer_head
from core.dialects import Codec
from core.errors import GatewayError
from core.http import error_body, late_body, log_access, request_id, run_codec
from core.lane.head import Head, read_head
from core.logs import request_id_var

if TYPE_CHECKING:
    from core.lane.edge import Edge

log = logging.getLogger("maas.http")

MAX_WAITED_BODY = 65536  # a bigger body still arriving after its head goes to aiohttp
_MAX_AHEAD = 65536  # bytes read past a running request before the connection stops being read


@dataclass(slots=True)
class _Waiting:
    """A request whose head was read and whose body is awaited."""

    head: Head
    rid: str
    started: float
    timer: asyncio.TimerHandle

    def log(self, status: int) -> None:
        token = request_id_var.set(self.rid)
        try:
            log_access("POST", self.head.codec.path, status, self.started, None)
        finally:
            request_id_var.reset(token)


class Lane(asyncio.Protocol):
    """One connection, while its requests are the common one (see ``core.lane``)."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.header_timeout_s = edge.header_timeout_s
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.task: asyncio.Task[None] | None = None
        self.idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._waiting: _Waiting | None = None  # a head read, its body awaited
        self._write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._read_paused = False

    @property
    def busy(self) -> bool:
        """A request runs, or its body is arriving."""
        return (self.task is not None and not self.task.done()) or self._waiting is not None

    # -- the connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.edge.closing:  # accepted just before the listener closed
            transport.close()
            return
        self.transport = tcp = transport  # type: ignore[assignment]
        tcp_nodelay(tcp, True)  # type: ignore[arg-type] # as aiohttp sets its connections
        tcp_keepalive(tcp)  # type: ignore[arg-type]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else "unknown"
        self.edge.lanes.add(self)
        self._idle(asyncio.get_running_loop())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.task is None:
            self._next()
        # a request runs and the next ones wait (pipelined): read no further past a limit
        if self.task is not None and len(self.buffer) > _MAX_AHEAD and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        return False  # a client that stops sending is gone: close, and cancel its request (as aiohttp does)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._waiting is not None:  # gone mid-body: nginx's 499, for the log only
            self._waiting.log(499)
        self._stop_timers()
        self.edge.lanes.discard(self)
        if self.task is not None:
            self.task.cancel()  # nobody reads the answer: its queued work is dropped
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- requests
    def _next(self) -> None:
        """Serve the request at the buffer's start, wait for the rest of it, or hand over."""
        buffer, edge = self.buffer, self.edge
        if not buffer:
            return
        if self._waiting is not None:  # the head was read: only the body's length is checked again
            head: Head | str | None = self._waiting.head
        else:
            head = read_head(buffer, edge.codecs, edge.gateway.settings.max_body_bytes, edge.cors)
        if head is None:
            return  # the head is still coming (the idle timer bounds how long)
        if not isinstance(head, Head):
            self._hand_over()
            return
        end = head.start + head.size
        if len(buffer) < end:  # the body is still coming
            if head.size > MAX_WAITED_BODY:
                self._hand_over()  # aiohttp reads it, with flow control, after auth
            elif self._waiting is None:
                self._wait_for_body(head)
            return
        if self._waiting is not None:
            self._stop_waiting()
        body = bytes(buffer[head.start:end])
        del buffer[:end]
        self.task = asyncio.get_running_loop().create_task(self._serve(head.codec, head.headers, body,
                                                                       head.keep_alive))

    async def _serve(self, codec: Codec, headers: CIMultiDict[str], body: bytes, keep_alive: bool) -> None:
        try:
            await self._respond(codec, headers, body, keep_alive)
        except Exception:  # the connection is in an unknown state: as aiohttp, log it and close
            log.exception("unhandled error")
            self.task = None
            self.close()
            return
        except BaseException:  # cancelled (the client left, or the process stops)
            self.close()
            raise
        self.task = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        request_id_var.set(None)  # the next request's task, or aiohttp's after a hand-over, starts clean
        self._idle(asyncio.get_running_loop())
        if self.buffer:  # a request sent meanwhile (pipelined)
            self._next()
        if self._read_paused and self.transport is not None and (self.task is None or len(self.buffer) <= _MAX_AHEAD):
            self._read_paused = False
            self.transport.resume_reading()

    async def _respond(self, codec: Codec, headers: CIMultiDict[str], body: bytes, keep_alive: bool) -> None:
        edge, path = self.edge, codec.path
        rid = request_id(headers.get("X-Request-ID", ""))
        request_id_var.set(rid)  # the task's own context
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        try:
            answer, answer_headers = await run_codec(edge.gateway, codec, rid, self.peer, headers,
                                                     body, extra)
            status, out = 200, answer_headers if answer_headers is not None else {}
        except GatewayError as exc:
            answer, close = error_body(exc, edge.errors, path)
            status, out, keep_alive = exc.status, dict(exc.headers), keep_alive and not close
            out.pop("Connection", None)  # the head says it, once
        except asyncio.CancelledError:
            log_access("POST", path, 499, started, extra)  # the client left: nginx's 499, for the log only
            raise
        except Exception:
            log.exception("unhandled error")
            answer, _ = error_body(GatewayError("Internal server error"), edge.errors, path)
            status, out = 500, {}
        out["X-Request-ID"] = rid
        keep_alive = keep_alive and not edge.drain.active and not edge.closing
        log_access("POST", path, status, started, extra)
        self._answer(status, out, answer, keep_alive)  # a header the head refuses raises: _serve closes
        if self._write_paused and self.transport is not None:  # the client reads slowly: wait before the next
            self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    def _answer(self, status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.writelines((answer_head(1, status, keep_alive, headers, len(body)), body))  # one send, no copy
        if not keep_alive:
            transport.close()

    # -- timers and hand-over
    def _idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """A request head must start arriving and end within the header timeout from now."""
        self.idle_since = loop.time()
        if self._idle_timer is None:
            self._idle_timer = loop.call_at(self.idle_since + self.header_timeout_s, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self.task is not None or self._waiting is not None or self.transport is None:
            return  # a request runs, or its body is awaited (it has its own timeout): armed again after
        loop = asyncio.get_running_loop()
        due = self.idle_since + self.header_timeout_s
        if loop.time() < due:
            self._idle_timer = loop.call_at(due, self._check_idle)
        else:
            self.transport.close()

    def _wait_for_body(self, head: Head) -> None:
        loop = asyncio.get_running_loop()
        rid = request_id(head.headers.get("X-Request-ID", ""))
        timer = loop.call_at(loop.time() + self.edge.gateway.settings.body_timeout_s, self._late)
        self._waiting = _Waiting(head, rid, time.perf_counter(), timer)

    def _stop_waiting(self) -> None:
        if self._waiting is not None:
            self._waiting.timer.cancel()
            self._waiting = None

    def _late(self) -> None:
        """The body did not all arrive in time: a 408 in the codec's shape; the connection closes."""
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        answer, _ = error_body(late_body(self.edge.gateway.settings.body_timeout_s), self.edge.errors,
                               waiting.head.codec.path)
        waiting.log(408)
        self.buffer.clear()
        self._answer(408, {"X-Request-ID": waiting.rid}, answer, False)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _stop_timers(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._stop_waiting()

    def _hand_over(self) -> None:
        """aiohttp serves this request and the rest of the connection, from the bytes read so far."""
        self._stop_timers()
        self.edge.lanes.discard(self)
        transport, self.transport = self.transport, None
        handler = self.edge.server()
        transport.set_protocol(handler)  # type: ignore[union-attr]
        handler.connection_made(transport)  # type: ignore[arg-type]
        _keep_deadline(handler, self.idle_since + self.header_timeout_s)
        if self._read_paused:
            transport.resume_reading()  # type: ignore[union-attr]
        if self.buffer:
            handler.data_received(bytes(self.buffer))
        self.buffer.clear()


def _keep_deadline(handler: Any, due: float) -> None:
    """aiohttp's handler times a connection's head from its own start: hold it to the deadline the
    lane already started, so a head trickled across the hand-over gets no second timeout. (Its
    keep-alive timer is private: where it is missing, the handler's own timeout stands.)"""
    handle = getattr(handler, "_keepalive_handle", None)
    if handle is not None and hasattr(handler, "_process_keepalive"):
        handle.cancel()
        handler._next_keepalive_close_time = due
        handler._keepalive_handle = asyncio.get_running_loop().call_at(due, handler._process_keepalive)
