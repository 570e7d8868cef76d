"""A job's record and its files: OpenAI's Batch object, the input split into chunks, each
chunk's output part, and the output and error files a finished job leaves.

A chunk's lines are embedded, then written as two parts named by the chunk and the run that wrote
them (``<k>.<run>.err.jsonl``, then ``<k>.<run>.out.jsonl``) under temporary names and renamed into
place, then recorded as done in the store with that run's name, in one write. A chunk run again
after a crash writes parts of its own, and the record names one run's pair: so at the end, when the
recorded parts are joined in order, every line is in the output (or error) file exactly once, even
when two runs of one chunk wrote at once (a claim taken over while its holder still worked).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from core import ids
from core.errors import InvalidRequest
from plugins.batches.files import FileStore, new_id, write_atomic
from plugins.batches.lines import numbered
from plugins.batches.store import Done, Job

WINDOWS = {"24h": 24 * 3600}
_PUBLIC = ("id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status", "output_file_id",
           "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at",
           "failed_at", "expired_at", "cancelling_at", "cancelled_at", "request_counts", "metadata")


def check_metadata(metadata: Any) -> dict[str, str] | None:
    """OpenAI's rule: up to 16 pairs, keys of 64 characters at most, string values of 512."""
    if metadata is None:
        return None
    if (not isinstance(metadata, dict) or len(metadata) > 16
            or any(not isinstance(k, str) or len(k) > 64 or not isinstance(v, str) or len(v) > 512
                   for k, v in metadata.items())):
        raise InvalidRequest("'metadata' must be an object of at most 16 string values (keys up to 64 "
                             "characters, values up to 512)", param="metadata")
    return dict(metadata)


def layout(path: Path, chunk_lines: int) -> list[list[int]]:
    """The input's chunks: ``[byte offset, non-blank lines]`` each, ``chunk_lines`` lines a chunk."""
    chunks: list[list[int]] = []
    offset = 0
    with open(path, "rb") as stream:
        for raw in stream:
            if raw.strip():
                if not chunks or chunks[-1][1] == chunk_lines:
                    chunks.append([offset, 0])
                chunks[-1][1] += 1
            offset += len(raw)
    return chunks


def new_job(owner: str, input_meta: dict[str, Any], endpoint: str, window: str, metadata: dict[str, str] | None,
            chunks: list[list[int]]) -> Job:
    now = int(time.time())
    return {"id": new_id("batch_"), "object": "batch", "endpoint": endpoint, "errors": None,
            "input_file_id": input_meta["id"], "completion_window": window, "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
            "expires_at": now + WINDOWS[window], "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None, "metadata": metadata,
            "owner": owner, "total": input_meta["lines"], "chunks": chunks}


def public(job: Job, results: dict[int, Done]) -> dict[str, Any]:
    """The OpenAI Batch object: the record's public fields and its progress."""
    body = {k: job.get(k) for k in _PUBLIC}
    body["request_counts"] = {"total": job["total"], "completed": sum(r[0] for r in results.values()),
                              "failed": sum(r[1] for r in results.values())}
    return body


def read_chunk(path: Path, offset: int, count: int) -> list[tuple[int, bytes]]:
    """``count`` non-blank lines from byte ``offset`` (numbered from 1 within the chunk)."""
    with open(path, "rb") as stream:
        stream.seek(offset)
        out = []
        for number, raw in numbered(stream):
            out.append((number, raw))
            if len(out) == count:
                break
        return out


def part(folder: Path, chunk: int, kind: str, run: str) -> Path:
    return folder / (f"{chunk:06d}.{run}.{kind}.jsonl" if run else f"{chunk:06d}.{kind}.jsonl")


def write_parts(folder: Path, chunk: int, output: list[bytes], errors: list[bytes], run: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(part(folder, chunk, "err", run), b"".join(errors))
    write_atomic(part(folder, chunk, "out", run), b"".join(output))


def drop_parts(folder: Path, chunk: int, run: str) -> None:
    for kind in ("out", "err"):
        part(folder, chunk, kind, run).unlink(missing_ok=True)


def line_record(custom_id: str, request_id: str, status: int | None, body: Any,
                error: dict[str, str] | None = None) -> bytes:
    """One line of an output or error file, in OpenAI's shape."""
    response = None if status is None else {"status_code": status, "request_id": request_id, "body": body}
    return orjson.dumps({"id": f"batch_req_{ids.token()}", "custom_id": custom_id, "response": response,
                         "error": error}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def expired_lines(input_path: Path, chunks: list[list[int]], undone: list[int]) -> list[bytes]:
    """The error-file lines of an expired job's unfinished lines (OpenAI's ``batch_expired``)."""
    out = []
    error = {"code": "batch_expired", "message": "This request could not be executed before the completion "
             "window expired."}
    for k in undone:
        offset, count = chunks[k]
        for _, raw in read_chunk(input_path, offset, count):
            out.append(line_record(orjson.loads(raw)["custom_id"], "", None, None, error))
    return out


def finish_files(files: FileStore, job: Job, done: dict[int, Done], status: str) -> dict[str, str | None]:
    """Join the done chunks' recorded parts, in chunk order, into the job's output and error files
    (fixed ids, so doing it twice writes the same files); the ids of those that hold lines."""
    folder = files.jobs / job["id"]
    stem = job["id"].removeprefix("batch_")
    outs = [part(folder, k, "out", done[k].run) for k in sorted(done)]
    errs = [part(folder, k, "err", done[k].run) for k in sorted(done)]
    if status == "expired":
        undone = [k for k in range(len(job["chunks"])) if k not in set(done)]
        extra = folder / "expired.err.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(extra, b"".join(expired_lines(files.data_path(job["input_file_id"]), job["chunks"], undone)))
        errs.append(extra)
    ids: dict[str, str | None] = {"output_file_id": None, "error_file_id": None}
    for field, parts, suffix, name in (("output_file_id", outs, "out", "output"),
                                       ("error_file_id", errs, "err", "error")):
        if any(p.stat().st_size for p in parts):
            meta = files.add_output(f"file-{stem}{suffix}", job["owner"], f"{job['id']}_{name}.jsonl", parts)
            ids[field] = meta["id"]
    return ids
