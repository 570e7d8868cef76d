"""The bucket store: in this process, or in core's shared-state Redis (``ROUTER_REDIS_URL``) so
that replicas share budgets. The arithmetic is ``buckets``."""

from plugins.rate_limit.buckets import (
    NEVER,
    BucketState,
    BucketStore,
    Decision,
    MemoryBucketStore,
    StoreUnavailable,
    decide,
    refill,
)

__all__ = ["NEVER", "BucketState", "BucketStore", "Decision", "MemoryBucketStore", "StoreUnavailable",
           "decide", "refill", "open_store"]


def open_store(redis_url: str | None) -> BucketStore:
    """The Redis store when a URL is set (replicas share budgets), else the in-process one."""
    if redis_url:
        from plugins.rate_limit.redis_store import RedisBucketStore

        return RedisBucketStore(redis_url)
    return MemoryBucketStore()
