"""The long-lived heap out of the collector's way (``core.heap``): frozen once the first config
has loaded, unfrozen by a reload (so the old snapshot's cycles can be collected), frozen again
after the next full collection; only ``maas serve`` runs it (``tests/test_live_reload.py`` reads
its log line from a real router)."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

import pytest

from core.heap import HeapFreeze


@pytest.fixture
def restore_gc():
    yield
    gc.unfreeze()


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_frozen_after_the_first_load_unfrozen_by_a_reload_and_frozen_after_the_next_full_collection(restore_gc):
    gc.unfreeze()
    gateway = SimpleNamespace(snapshot=None)
    heap = HeapFreeze(gateway)
    assert heap.step() is None and gc.get_freeze_count() == 0  # nothing loaded yet: nothing to settle
    gateway.snapshot = object()
    assert heap.step() == "frozen" and gc.get_freeze_count() > 0
    assert heap.step() is None  # the same snapshot: nothing to do

    old = Cycle()  # an object of the old snapshot, in a reference cycle
    gc.freeze()  # (as if it had been there at the first freeze)
    gateway.snapshot = object()
    assert heap.step() == "unfrozen" and gc.get_freeze_count() == 0
    assert heap.step() is None  # until the interpreter runs a full collection
    freed: list[bool] = []
    ref = weakref.ref(old, lambda _: freed.append(True))
    del old
    gc.collect()  # the full collection: the old snapshot's cycle goes
    assert freed and ref() is None
    young = weakref.ref(Cycle())  # garbage made since (a request's cycle): collected, not frozen
    assert heap.step() == "frozen" and gc.get_freeze_count() > 0
    assert young() is None


def test_an_app_made_in_process_leaves_the_collector_alone(tmp_path):
    """Only ``maas serve`` sets the freezer (a process serving for good); an app a test (or an
    embedding program) makes keeps its collector as it is."""
    from core.app import HEAP, create_app
    from tests.support.inprocess import write_configs

    assert create_app(write_configs(tmp_path)).get(HEAP) is None
