"""Torch's threads for a model's batches. Each thread keeps its own OpenMP setting, and a thread
torch has not seen yet starts from the last value any thread set: so every model thread sets its
own before a batch that needs another count (``adapters.local.LocalModel``), and the count the
process started with is kept here, read before any thread changed it.
"""

from __future__ import annotations

_starting: list[int] = []  # torch's threads as the process started (the cores, or OMP_NUM_THREADS)


def torch_threads() -> int:
    """The threads torch runs one batch on as the process started."""
    if not _starting:
        import torch

        _starting.append(torch.get_num_threads())
    return _starting[0]


def set_torch_threads(threads: int) -> None:
    """Torch's threads for the calling thread's next batches."""
    import torch

    torch_threads()  # the starting count, kept before the first change
    torch.get_num_threads()  # torch sets a thread's count at its first use, from the process-wide value:
    torch.set_num_threads(threads)  # done now, so another thread's later change cannot replace this one
