"""Live configuration: watch the three config files and reload when their content changes.

File events (watchfiles) make a change apply within moments. A content check every
``ROUTER_ROUTING_RELOAD_INTERVAL_SECONDS`` is the fallback where events do not arrive
(network file systems, some container mounts, a path that is a symlink into another
directory), so no change waits longer than that interval. ``SIGHUP`` forces a reload.

The watcher watches directories and compares content, not events: a Kubernetes ConfigMap
update never writes the file, it points the ``..data`` symlink at a new directory, so the
path reads new bytes while the only events are on ``..data``. Comparing digests also means
a reload happens only when the content changed, whatever events an editor produces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING

import watchfiles

from core.config.files import config_digest, read_all

if TYPE_CHECKING:
    from core.gateway import Gateway

log = logging.getLogger("maas.reload")

# An unreadable file (deleted, no permission) reads as a state of its own (snapshot.read_all):
# loading it fails once and is reported once, like any other bad content.
_STEP_MS = 50  # a change is acted on once the directory has been quiet this long


class ConfigWatcher:
    """Reloads the gateway's config whenever the files on disk differ from the serving snapshot.

    A content that failed to load is not retried until it changes again (or on SIGHUP), so a
    bad file is logged and counted once, not at every tick.
    """

    def __init__(self, gateway: Gateway, *, interval_s: float | None = None, use_events: bool = True) -> None:
        s = gateway.settings
        self.gateway = gateway
        self.paths = tuple(Path(p).absolute() for p in (s.routing_path, s.auth_path, s.rate_limits_path))
        self.interval_s = max(0.05, s.reload_interval_s if interval_s is None else interval_s)
        self.use_events = use_events
        self._rejected: str | None = None
        self._forced = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._sighup = False

    def disk_digest(self) -> str:
        """The digest the files on disk would load with (same as ``Snapshot.digest``)."""
        serving = self.gateway.snapshot
        key_files = serving.files.auth.key_files if serving is not None else ()
        return config_digest(read_all((*self.paths, *key_files), self.gateway.settings.max_config_bytes))

    async def check(self, *, force: bool = False) -> bool:
        """Load the files if their content is new; return True if a new snapshot was swapped in."""
        digest = await asyncio.to_thread(self.disk_digest)  # reading and hashing: off the event loop
        if not force and not self._is_new(digest):
            return False
        digest = await self._settled(digest)
        if not force and not self._is_new(digest):
            return False
        log.info("config change detected", extra={"digest": digest, "forced": force})
        try:
            await self.gateway.load()
        except Exception:  # load has logged it (file and line) and counted it; keep serving
            self._rejected = digest
            return False
        self._rejected = None
        return True

    def _is_new(self, digest: str) -> bool:
        serving = self.gateway.snapshot
        if serving is not None and digest == serving.digest:
            if self._rejected is not None:  # the operator's fix took: say so, as the rejection was said
                log.info("config accepted again: the files are back to the serving version",
                         extra={"digest": digest})
            self._rejected = None  # back to the serving content: a later bad write is news again
            return False
        return digest != self._rejected

    async def _settled(self, digest: str) -> str:
        """Wait until two reads one step apart agree, so a file caught between truncate and
        write (empty, hence valid: no models) or half written is not what gets loaded."""
        for _ in range(40):
            await asyncio.sleep(_STEP_MS / 1000)
            again = await asyncio.to_thread(self.disk_digest)
            if again == digest:
                break
            digest = again
        return digest

    def request_reload(self) -> None:
        """Reload at once even if the content looks unchanged (SIGHUP): retries a load that
        failed for a reason outside the files, such as an upstream that was down."""
        self._forced = True
        self._wake.set()

    def start(self, after: Awaitable | None = None, *, handle_sighup: bool = False) -> None:
        """Start watching, once ``after`` (the initial load) has finished."""
        self._task = asyncio.create_task(self._run(after), name="config-watcher")
        if handle_sighup:
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_reload)
                self._sighup = True
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
                log.warning("SIGHUP reload unavailable here")

    async def stop(self) -> None:
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
            except TimeoutError:  # a load still building models: do not hold up shutdown
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _run(self, after: Awaitable | None) -> None:
        if after is not None:
            await asyncio.wait([asyncio.ensure_future(after)])
        if self.gateway.snapshot is None:
            return  # the initial load failed and the process is stopping
        events = asyncio.create_task(self._forward_events(), name="config-events") if self.use_events else None
        log.info("watching config files", extra={"paths": [str(p) for p in self.paths],
                                                 "interval_s": self.interval_s, "file_events": self.use_events})
        try:
            while not self._stop.is_set():
                force, self._forced = self._forced, False
                try:
                    await self.check(force=force)
                except Exception:  # the watcher must outlive any surprise; the next tick retries
                    log.exception("config check failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
                self._wake.clear()
        finally:
            if events is not None:
                self._stop.set()
                await events

    async def _forward_events(self) -> None:
        # The parent directories, not the files: a rename over a file or a ``..data`` swap
        # replaces the inode a file watch would be holding.
        dirs = sorted({str(p.parent) for p in self.paths})
        debounce_ms = max(_STEP_MS, min(1600, int(self.interval_s * 1000)))
        try:
            async for _ in watchfiles.awatch(*dirs, watch_filter=None, debounce=debounce_ms, step=_STEP_MS,
                                             stop_event=self._stop, recursive=False):
                self._wake.set()
        except Exception as exc:  # e.g. the inotify watch limit: the interval check still runs
            log.warning("file events unavailable; checking every %g s", self.interval_s,
                        extra={"error": str(exc)})
