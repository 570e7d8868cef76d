"""The identifiers the gateway mints per request: request ids, answers' ids, bulk-job line ids.

They name a request in logs and answers and guard nothing (a job's files are found through their
owner's key too), so they come from a generator of this process, seeded from the OS at start (and
again in a forked child), not from a system call each: ``os.urandom`` lets go of the GIL, and the
event loop then waited for an in-process model's thread to hand it back, twice per bulk-job line.
"""

from __future__ import annotations

import os
import random

_random = random.Random(os.urandom(32))  # noqa: S311 - ids name requests; they guard nothing
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def token() -> str:
    """32 hex digits (128 random bits)."""
    return f"{_random.getrandbits(128):032x}"
