"""The HTTP face of bulk jobs: OpenAI's ``/v1/files`` and ``/v1/batches``. Every route
authenticates with the chain's every-request stages (``auth``) and scopes what it shows to the
caller's key: another key's file or job is a 404, as if it did not exist."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import BodyPartReader, web

import plugins.batches.jobs as job_files
from core.dialects import ParseLimits
from core.errors import ClientClosedRequest, InvalidRequest, RequestTimeout, ServiceUnavailable
from core.flow import Flow
from core.offload import off_loop
from plugins.batches.files import FileStore, public
from plugins.batches.lines import BULK_URLS, check_file
from plugins.batches.settings import BatchSettings, NotFound

if TYPE_CHECKING:
    from core.running import RunningGateway
    from plugins.batches.runner import JobRunner
    from plugins.batches.store import JobStore

READ_BLOCK = 256 * 1024


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class BatchRoutes:
    def __init__(self, gateway: RunningGateway, settings: BatchSettings, files: FileStore, store: JobStore,
                 runner: JobRunner) -> None:
        self.gw, self.settings, self.files, self.store, self.runner = gateway, settings, files, store, runner

    async def owner(self, request: web.Request) -> str:
        """The caller's key name (``anonymous`` without keys); 401 as for any model call."""
        snapshot = self.gw.snapshot
        if snapshot is None:
            raise ServiceUnavailable("The gateway is starting; retry shortly")
        flow = Flow(kind="models", snapshot=snapshot, request_id=request.headers.get("X-Request-ID", ""),
                    client_ip=request.remote or "unknown", headers=request.headers)
        await self.gw.chain.run(flow, common_only=True)
        return flow.caller.name if flow.caller is not None else "anonymous"

    def bulk_codecs(self) -> dict[str, Any]:
        return {url: self.gw.codecs.by_path[url] for url in BULK_URLS if url in self.gw.codecs.by_path}

    # -- files ---------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.Response:
        owner = await self.owner(request)
        if not request.content_type.startswith("multipart/"):
            raise InvalidRequest("Upload the file as multipart/form-data with fields 'purpose' and 'file'")
        if "boundary=" not in request.headers.get("Content-Type", ""):
            raise InvalidRequest("The multipart/form-data body has no boundary in its Content-Type")
        reader = await request.multipart()
        purpose, kept = None, None
        try:
            while (part := await self._next(reader)) is not None:
                if not isinstance(part, BodyPartReader):
                    raise InvalidRequest("Nested multipart bodies are not accepted")
                if part.name == "purpose":
                    purpose = (await part.read_chunk(64)).decode("utf-8", "replace").strip()
                elif part.name == "file" and kept is None:
                    tmp, size = await self.files.receive(self._chunks(part), request.content_length)
                    kept = (tmp, size, part.filename or "upload.jsonl")
                else:
                    raise InvalidRequest(f"Unknown form field {part.name!r}; send 'purpose' and 'file'")
            if kept is None:
                raise InvalidRequest("The form has no 'file' field", param="file")
            if purpose != "batch":
                raise InvalidRequest("'purpose' must be 'batch' (the only purpose served)", param="purpose")
            tmp, size, filename = kept
            summary = await off_loop(check_file, str(tmp), self.bulk_codecs(),
                                     ParseLimits(max_inputs=self.gw.settings.max_inputs), self.gw.settings.caps,
                                     self.settings.max_lines)
            meta = await off_loop(self.files.keep, tmp, owner, filename, purpose, size,
                                  {"lines": summary.lines, "urls": list(summary.urls)})
            kept = None
            return _json(public(meta))
        finally:
            if kept is not None:
                kept[0].unlink(missing_ok=True)

    async def _next(self, reader: Any) -> Any:
        try:
            async with asyncio.timeout(self.gw.settings.body_timeout_s):
                return await reader.next()
        except TimeoutError:
            raise RequestTimeout("The upload stalled", headers={"Connection": "close"}) from None
        except ValueError as exc:  # aiohttp's reader: no or a wrong boundary, a part cut short
            raise InvalidRequest(f"The multipart/form-data body is malformed: {str(exc)[:120]}") from None

    async def _chunks(self, part: BodyPartReader) -> AsyncIterator[bytes]:
        """The file part's bytes; each read waits at most ROUTER_BODY_TIMEOUT_SECONDS (a big upload
        may take longer as a whole, never stall)."""
        while True:
            try:
                async with asyncio.timeout(self.gw.settings.body_timeout_s):
                    chunk = await part.read_chunk(READ_BLOCK)
            except TimeoutError:
                raise RequestTimeout("The upload stalled", headers={"Connection": "close"}) from None
            except ConnectionResetError:
                raise ClientClosedRequest("The client closed the connection mid-upload") from None
            except ValueError as exc:
                raise InvalidRequest(f"The multipart/form-data body is malformed: {str(exc)[:120]}") from None
            if not chunk:
                return
            yield chunk

    async def retrieve_file(self, request: web.Request) -> web.Response:
        owner = await self.owner(request)
        return _json(public(await off_loop(self.files.owned, request.match_info["file_id"], owner)))

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        owner = await self.owner(request)
        meta = await off_loop(self.files.owned, request.match_info["file_id"], owner)
        return web.FileResponse(self.files.data_path(meta["id"]), headers={"Content-Type": "application/jsonl"})

    async def delete_file(self, request: web.Request) -> web.Response:
        owner = await self.owner(request)
        meta = await off_loop(self.files.owned, request.match_info["file_id"], owner)
        await off_loop(self.files.delete, meta["id"])
        return _json({"id": meta["id"], "object": "file", "deleted": True})

    async def list_files(self, request: web.Request) -> web.Response:
        owner = await self.owner(request)
        found = await off_loop(self.files.list_owned, owner, request.query.get("purpose"))
        return _json({"object": "list", "data": [public(m) for m in found], "has_more": False})

    # -- batches -------------------------------------------------------------------------------
    async def create_batch(self, request: web.Request) -> web.Response:
        owner = await self.owner(request)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise InvalidRequest("Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidRequest("Request body must be a JSON object")
        unknown = sorted(set(body) - {"input_file_id", "endpoint", "completion_window", "metadata"})
        if unknown:
            raise InvalidRequest(f"Unknown field(s): {', '.join(unknown)}", param=unknown[0])
        endpoint = body.get("endpoint")
        if endpoint not in self.bulk_codecs():
            raise InvalidRequest(f"'endpoint' must be one of {', '.join(self.bulk_codecs())}", param="endpoint")
        window = body.get("completion_window")
        if window not in job_files.WINDOWS:
            raise InvalidRequest("'completion_window' must be '24h'", param="completion_window")
        metadata = job_files.check_metadata(body.get("metadata"))
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str):
            raise InvalidRequest("'input_file_id' must be a file id", param="input_file_id")
        meta = await off_loop(self.files.owned, file_id, owner)
        if meta.get("purpose") != "batch":
            raise InvalidRequest(f"File '{file_id}' was not uploaded with purpose 'batch'", param="input_file_id")
        if meta.get("urls") != [endpoint]:
            raise InvalidRequest(f"Every line of file '{file_id}' must have url '{endpoint}' (it has "
                                 f"{', '.join(meta.get('urls', []))})", param="input_file_id")
        chunks = await off_loop(job_files.layout, self.files.data_path(file_id), self.settings.chunk_lines)
        job = job_files.new_job(owner, meta, endpoint, window, metadata, chunks)
        await self.store.create(job)
        self.runner.created(job)
        return _json(job_files.public(job, {}))

    async def _owned_job(self, request: web.Request) -> dict[str, Any]:
        owner = await self.owner(request)
        batch_id = request.match_info["batch_id"]
        job = await self.store.get(batch_id)
        if job is None or job.get("owner") != owner:
            raise NotFound(f"No batch with id '{batch_id}'", param="batch_id")
        return job

    async def retrieve_batch(self, request: web.Request) -> web.Response:
        job = await self._owned_job(request)
        return _json(job_files.public(job, await self.store.results(job["id"])))

    async def cancel_batch(self, request: web.Request) -> web.Response:
        job = await self._owned_job(request)
        job = await self.runner.cancel(job["id"])
        return _json(job_files.public(job, await self.store.results(job["id"])))

    async def list_batches(self, request: web.Request) -> web.Response:
        owner = await self.owner(request)
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            raise InvalidRequest("'limit' must be an integer from 1 to 100", param="limit") from None
        if not 1 <= limit <= 100:
            raise InvalidRequest("'limit' must be an integer from 1 to 100", param="limit")
        jobs = await self.store.owned(owner)
        after = request.query.get("after")
        if after is not None:
            ids = [j["id"] for j in jobs]
            jobs = jobs[ids.index(after) + 1:] if after in ids else []
        page = jobs[:limit]
        data = [job_files.public(j, await self.store.results(j["id"])) for j in page]
        return _json({"object": "list", "data": data, "first_id": page[0]["id"] if page else None,
                      "last_id": page[-1]["id"] if page else None, "has_more": len(jobs) > limit})
