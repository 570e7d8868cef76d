"""Files under ``ROUTER_BATCH_DIR``: uploads streamed to disk, their OpenAI file objects, the
disk budget and retention.

Layout: ``files/<id>.jsonl`` (the bytes) beside ``files/<id>.json`` (the file object and its
owner, the key name), and ``jobs/<batch id>/`` (a job's per-chunk output parts). Every write
lands in a temporary name and is renamed into place, so a reader (or a replica sharing the
folder) sees a whole file or none. Disk work runs off the event loop.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from core.errors import PayloadTooLarge
from core.offload import off_loop
from plugins.batches.settings import BatchSettings, NotFound, StorageFull

WRITE_BLOCK = 1024 * 1024  # bytes gathered before one write off the loop


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, whole or not at all (written aside, flushed, renamed)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def public(meta: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI file object (without the owner and what only the gateway reads)."""
    return {k: meta[k] for k in ("id", "object", "bytes", "created_at", "filename", "purpose", "status",
                                 "expires_at", "status_details") if k in meta}


class FileStore:
    def __init__(self, settings: BatchSettings) -> None:
        self.settings = settings
        self.root = Path(settings.directory)
        self.files = self.root / "files"
        self.jobs = self.root / "jobs"

    def ensure(self) -> None:
        self.files.mkdir(parents=True, exist_ok=True)
        self.jobs.mkdir(parents=True, exist_ok=True)

    def data_path(self, file_id: str) -> Path:
        return self.files / f"{file_id}.jsonl"

    def _meta_path(self, file_id: str) -> Path:
        return self.files / f"{file_id}.json"

    # -- the disk budget -----------------------------------------------------------------------
    def used_bytes(self) -> int:
        total = 0
        for folder in (self.files, self.jobs):
            if folder.exists():
                for dirpath, _, names in os.walk(folder):
                    for name in names:
                        with contextlib.suppress(FileNotFoundError):
                            total += os.stat(os.path.join(dirpath, name)).st_size
        return total

    def check_room(self, more: int) -> None:
        used, budget = self.used_bytes(), self.settings.max_bytes
        if used + more > budget:
            raise StorageFull(f"The bulk-job storage is full: {used / 1024**2:.1f} MB of "
                              f"{budget / 1024**2:.1f} MB (ROUTER_BATCH_MAX_GB) are in use; delete files "
                              "or wait for retention to free space")

    # -- uploads -------------------------------------------------------------------------------
    async def receive(self, chunks: AsyncIterator[bytes], expected: int | None) -> tuple[Path, int]:
        """Stream an upload to a temporary file, within the file limit and the disk budget;
        return its path and size. Nothing is held in memory but one write block."""
        limit = self.settings.max_file_bytes
        if expected is not None and expected > limit:
            raise _too_large(limit)
        await off_loop(self.ensure)
        await off_loop(self.check_room, expected or 0)
        tmp = self.files / f".upload-{secrets.token_hex(8)}.tmp"
        fh = await off_loop(open, tmp, "wb")
        size, block = 0, bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                block += chunk
                if len(block) >= WRITE_BLOCK:
                    await off_loop(fh.write, bytes(block))
                    block.clear()
                    await off_loop(self.check_room, 0)
            await off_loop(fh.write, bytes(block))
        except BaseException:
            fh.close()
            tmp.unlink(missing_ok=True)
            raise
        await off_loop(fh.close)
        return tmp, size

    def keep(self, tmp: Path, owner: str, filename: str, purpose: str, size: int,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The checked upload at ``tmp`` kept as a new file; its stored object."""
        file_id = new_id("file-")
        now = int(time.time())
        meta = {"id": file_id, "object": "file", "bytes": size, "created_at": now, "filename": filename,
                "purpose": purpose, "status": "processed",
                "expires_at": now + int(self.settings.retention_hours * 3600), "owner": owner, **(extra or {})}
        os.replace(tmp, self.data_path(file_id))
        write_atomic(self._meta_path(file_id), orjson.dumps(meta))
        return meta

    def add_output(self, file_id: str, owner: str, filename: str, parts: list[Path]) -> dict[str, Any]:
        """A job's output (``batch_output``) concatenated from its parts, in order, under a fixed id:
        finalizing twice (a replica stopped halfway) writes the same file again."""
        target = self.data_path(file_id)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, WRITE_BLOCK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        now = int(time.time())
        meta = {"id": file_id, "object": "file", "bytes": target.stat().st_size, "created_at": now,
                "filename": filename, "purpose": "batch_output", "status": "processed",
                "expires_at": now + int(self.settings.retention_hours * 3600), "owner": owner}
        write_atomic(self._meta_path(file_id), orjson.dumps(meta))
        return meta

    # -- reading, listing, deleting ------------------------------------------------------------
    def read_meta(self, file_id: str) -> dict[str, Any] | None:
        if not file_id.startswith("file-") or "/" in file_id or len(file_id) > 64:
            return None
        try:
            return orjson.loads(self._meta_path(file_id).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None

    def owned(self, file_id: str, owner: str) -> dict[str, Any]:
        """The file's object if ``owner`` made it; NotFound otherwise (another key's file does not exist for it)."""
        meta = self.read_meta(file_id)
        if meta is None or meta.get("owner") != owner or not self.data_path(file_id).exists():
            raise NotFound(f"No file with id '{file_id}'", param="file_id")
        return meta

    def list_owned(self, owner: str, purpose: str | None = None) -> list[dict[str, Any]]:
        found = []
        if self.files.exists():
            for path in self.files.glob("file-*.json"):
                meta = self.read_meta(path.stem)
                if meta is not None and meta.get("owner") == owner and purpose in (None, meta.get("purpose")):
                    found.append(meta)
        return sorted(found, key=lambda m: (m["created_at"], m["id"]), reverse=True)

    def delete(self, file_id: str) -> None:
        self._meta_path(file_id).unlink(missing_ok=True)
        self.data_path(file_id).unlink(missing_ok=True)

    def expired_files(self, now: float) -> list[str]:
        if not self.files.exists():
            return []
        return [p.stem for p in self.files.glob("file-*.json")
                if (m := self.read_meta(p.stem)) is not None and m.get("expires_at", now + 1) <= now]


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than the limit of {limit / 1024**2:g} MB (ROUTER_BATCH_MAX_FILE_MB)",
                           param="file", code="file_too_large")
