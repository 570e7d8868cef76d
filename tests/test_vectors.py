"""``as_float32`` hands back a native float32 array itself and converts anything else as numpy does."""

from __future__ import annotations

import numpy as np
import pytest

from core.vectors import as_float32


def test_a_float32_array_comes_back_itself():
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert as_float32(vectors) is vectors


@pytest.mark.parametrize("given", [
    [[1.5, 2.0], [3.0, 4.25]],
    np.array([[1.5, 2.0], [3.0, 4.25]], dtype=np.float64),
    np.array([[1.5, 2.0], [3.0, 4.25]], dtype=">f4"),
    np.array([[1, 2], [3, 4]], dtype=np.int8),
])
def test_anything_else_is_converted_as_numpy_converts_it(given):
    got = as_float32(given)
    want = np.asarray(given, dtype=np.float32)
    assert got.dtype == np.dtype(np.float32) and got.dtype.isnative and np.array_equal(got, want)
