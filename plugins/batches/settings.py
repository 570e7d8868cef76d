"""The bulk-job API's settings (``ROUTER_BATCH_*``) and the errors only it answers."""

from __future__ import annotations

from dataclasses import dataclass

from core.config.sections import EnvOption, SettingsSection
from core.errors import GatewayError, InvalidRequest


@dataclass(frozen=True, slots=True)
class BatchSettings:
    directory: str = "data/batches"  # relative paths are under the router's working directory
    max_gb: float = 10.0  # every file and job output together
    max_file_mb: float = 200.0  # one uploaded file (OpenAI's limit)
    max_lines: int = 50_000  # lines of one uploaded file (OpenAI's limit)
    retention_hours: float = 168.0  # how long a file is kept after its upload (or a job's output after its end)
    chunk_lines: int = 256  # lines a runner claims, embeds and checkpoints at once
    lease_s: float = 30.0  # a claim not renewed for this long is taken over by another replica

    @property
    def max_bytes(self) -> int:
        return int(self.max_gb * 1024**3)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024**2)


SETTINGS = SettingsSection(BatchSettings, (
    EnvOption("ROUTER_BATCH_DIR", "directory", "str", "data/batches",
              "folder of uploaded files, job outputs and (without ROUTER_REDIS_URL) job state; shared by replicas"),
    EnvOption("ROUTER_BATCH_MAX_GB", "max_gb", "float", 10.0, "disk budget of files and outputs; over it, uploads "
              "are refused (413 batch_storage_full)", minimum=0.001),
    EnvOption("ROUTER_BATCH_MAX_FILE_MB", "max_file_mb", "float", 200.0, "most megabytes in one uploaded file",
              minimum=0.001),
    EnvOption("ROUTER_BATCH_MAX_LINES", "max_lines", "int", 50_000, "most lines in one uploaded file", minimum=1),
    EnvOption("ROUTER_BATCH_RETENTION_HOURS", "retention_hours", "float", 168.0,
              "files and job outputs are deleted this long after their upload or the job's end", minimum=0.001),
    EnvOption("ROUTER_BATCH_CHUNK_LINES", "chunk_lines", "int", 256,
              "lines a runner embeds and checkpoints at once", minimum=1),
    EnvOption("ROUTER_BATCH_LEASE_SECONDS", "lease_s", "float", 30.0,
              "a replica's claim on a chunk lapses this long after its last renewal", minimum=1),
), title="bulk jobs")


class NotFound(GatewayError):
    """A file or job that does not exist, or belongs to another key (which must not learn it exists)."""

    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class StorageFull(InvalidRequest):
    """The disk budget (ROUTER_BATCH_MAX_GB) is spent. 413 rather than 507: the OpenAI SDKs retry
    a 5xx at once, re-sending up to 200 MB for an answer that holds until retention frees space."""

    status = 413
    default_code = "batch_storage_full"
