"""Scheduling work onto models: fair queueing across tenants, priority, bounded admission and
cancellation (``scheduler``), what it is given (``work``), and one queue per model (``queues``)."""

from core.scheduling.scheduler import Scheduler
from core.scheduling.work import (
    ANONYMOUS,
    BULK,
    INTERACTIVE,
    PRIORITIES,
    Bounds,
    QueueObserver,
    Tenant,
    Work,
    estimate_tokens,
)
from core.scheduling.worker import BULK_EVERY, QUANTUM

__all__ = ["ANONYMOUS", "BULK", "BULK_EVERY", "INTERACTIVE", "PRIORITIES", "QUANTUM", "Bounds", "QueueObserver",
           "Scheduler", "Tenant", "Work", "estimate_tokens"]
