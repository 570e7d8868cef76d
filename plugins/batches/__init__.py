"""Bulk jobs: OpenAI's Batch API for embeddings (``/v1/files``, ``/v1/batches``).

A key uploads a JSONL file of embedding requests, makes a job of it and comes back for the
vectors. Jobs run in the scheduler's bulk lane through the same served models as synchronous
requests (``execute``), in chunks checkpointed to ``ROUTER_BATCH_DIR`` (``jobs``), resumed after a
restart and shared across replicas through the store (``store``: Redis with ``ROUTER_REDIS_URL``,
else a state file for one replica). Files and jobs belong to the key that made them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import plugins.batches.openapi as api
from core import hookimpl
from core.errors import ServiceUnavailable
from plugins.batches.files import FileStore
from plugins.batches.metrics import BatchMetrics
from plugins.batches.routes import BatchRoutes
from plugins.batches.runner import JobRunner
from plugins.batches.settings import SETTINGS, BatchSettings
from plugins.batches.store import JobStore, LocalJobStore

if TYPE_CHECKING:
    from core.running import RunningGateway

log = logging.getLogger("maas.batches")


class BatchesPlugin:
    def __init__(self) -> None:
        self.routes: BatchRoutes | None = None
        self.runner: JobRunner | None = None
        self.store: JobStore | None = None

    @hookimpl
    def register_settings(self, register) -> None:
        register(SETTINGS)

    @hookimpl
    def register_routes(self, register) -> None:
        def bound(name: str):
            async def handler(request):
                if self.routes is None:
                    raise ServiceUnavailable("Bulk jobs are starting; retry shortly")
                return await getattr(self.routes, name)(request)
            return handler

        file_id, batch_id = ("file_id",), ("batch_id",)
        register("POST", "/v1/files", bound("upload"), api.operation(
            "createFile", "Upload a JSONL file of requests for a bulk job", api.FILE, body=api.UPLOAD,
            errors=("400", "401", "413")))
        register("GET", "/v1/files", bound("list_files"), api.operation(
            "listFiles", "This key's files", api._list(api.FILE), errors=("401",), query=("purpose",)))
        register("GET", "/v1/files/{file_id}", bound("retrieve_file"), api.operation(
            "retrieveFile", "One file", api.FILE, params=file_id, errors=("401", "404")))
        register("DELETE", "/v1/files/{file_id}", bound("delete_file"), api.operation(
            "deleteFile", "Delete a file", {"type": "object"}, params=file_id, errors=("401", "404")))
        register("GET", "/v1/files/{file_id}/content", bound("file_content"), api.operation(
            "downloadFile", "A file's bytes (JSONL)", None, params=file_id, errors=("401", "404")))
        register("POST", "/v1/batches", bound("create_batch"), api.operation(
            "createBatch", "Run a file's requests as a bulk job", api.BATCH, body=api.CREATE))
        register("GET", "/v1/batches", bound("list_batches"), api.operation(
            "listBatches", "This key's bulk jobs, newest first", api._list(api.BATCH), errors=("400", "401"),
            query=("after", "limit")))
        register("GET", "/v1/batches/{batch_id}", bound("retrieve_batch"), api.operation(
            "retrieveBatch", "One bulk job and its progress", api.BATCH, params=batch_id, errors=("401", "404")))
        register("POST", "/v1/batches/{batch_id}/cancel", bound("cancel_batch"), api.operation(
            "cancelBatch", "Cancel a bulk job (what is done is kept)", api.BATCH, params=batch_id,
            errors=("401", "404")))

    @hookimpl
    async def startup(self, gateway: RunningGateway) -> None:
        settings = gateway.settings.of(BatchSettings)
        files = FileStore(settings)
        if gateway.settings.redis_url:
            from plugins.batches.redis_store import RedisJobStore
            self.store = RedisJobStore(gateway.settings.redis_url)
        else:
            self.store = LocalJobStore(files.root)
        metrics = BatchMetrics(gateway.metrics.registry)
        self.runner = JobRunner(gateway, files, self.store, settings, metrics)
        self.routes = BatchRoutes(gateway, settings, files, self.store, self.runner)
        self.runner.start()

    @hookimpl
    async def shutdown(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        if self.store is not None:
            await self.store.close()
