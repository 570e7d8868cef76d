"""The width check's finiteness test (``all_finite``) answers as numpy's ``isfinite().all()`` does,
for every float32 bit pattern and any array: the bytes it reads first only ever let a finite
array through."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UpstreamError
from core.served.widths import WidthGuard
from core.vectors import all_finite


@pytest.mark.parametrize("shape", [(1, 8), (3, 384), (2, 40000), (1, 1)])
def test_all_finite_is_numpys_answer_for_random_bit_patterns(shape):
    rng = np.random.default_rng(sum(shape))
    for trial in range(200 if shape[1] < 1000 else 10):
        bits = rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)
        if trial % 2:  # mostly ordinary values, a few bit patterns mixed in
            values = rng.normal(size=shape).astype(np.float32)
            mask = rng.random(shape) < 0.01
            values[mask] = bits.view(np.float32)[mask]
        else:
            values = bits.view(np.float32)
        assert all_finite(values) == bool(np.isfinite(values).all())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, np.float32(np.nan) * -1])
@pytest.mark.parametrize("make", [
    lambda a: a,
    lambda a: a[:, ::2],  # not contiguous
    lambda a: a.astype(">f4"),  # another byte order
    lambda a: a.astype(np.float64),
])
def test_one_value_not_finite_anywhere_is_found(bad, make):
    for position in [(0, 0), (1, 383), (0, 200)]:
        values = np.linspace(-3e38, 3e38, 768, dtype=np.float32).reshape(2, 384)  # the largest finite values
        assert all_finite(make(values))
        values[position] = bad
        if position[1] % 2 == 0 or make(values).shape[1] == 384:
            assert not all_finite(make(values)), (position, make(values).dtype)


def test_the_guard_refuses_an_answer_with_a_value_not_finite():
    guard = WidthGuard("m", 4, {}, "k")
    ok = np.ones((2, 4), dtype=np.float32)
    assert guard.check(ok, 2) is ok
    ok[1, 3] = np.inf
    with pytest.raises(UpstreamError) as caught:
        guard.check(ok, 2)
    assert caught.value.code == "upstream_not_finite"

