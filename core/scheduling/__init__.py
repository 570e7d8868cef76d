"""Scheduling work onto models: fair queueing across tenants, priority, bounded admission and
cancellation (``scheduler``), what it is given (``work``), and one queue per model (``queues``)."""

from core.scheduling.scheduler import BULK_EVERY, QUANTUM, QueueObserver, Scheduler
from core.scheduling.work import ANONYMOUS, BULK, INTERACTIVE, PRIORITIES, Bounds, Tenant, Work, estimate_tokens

__all__ = ["ANONYMOUS", "BULK", "BULK_EVERY", "INTERACTIVE", "PRIORITIES", "QUANTUM", "Bounds", "QueueObserver",
           "Scheduler", "Tenant", "Work", "estimate_tokens"]
