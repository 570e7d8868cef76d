"""Token buckets: the arithmetic, and the stores that keep bucket state (in-process or Redis)."""

from core.ratelimit.buckets import (
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
        from core.ratelimit.redis_store import RedisBucketStore

        return RedisBucketStore(redis_url)
    return MemoryBucketStore()
