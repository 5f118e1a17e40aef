"""Dense factorizations (tnlib._linalg): TSQR."""

import numpy as np
import pytest

from conftest import random_array
from tnlib import _linalg as linalg


@pytest.mark.parametrize("shape, dtype", [((9000, 8), "float64"), ((20000, 16), "float32"), ((8500, 3), "complex128")])
def test_tall_skinny_qr_is_exact_and_orthonormal(shape, dtype):
    a = random_array(shape, dtype, seed=11)
    q, r = linalg.qr(a)  # blocked TSQR at these sizes
    tol = 1e-5 if dtype == "float32" else 1e-13
    assert q.shape == shape and r.shape == (shape[1], shape[1]) and q.dtype == a.dtype
    assert np.abs(q @ r - a).max() <= tol * np.abs(a).max()
    assert np.abs(q.conj().T @ q - np.eye(shape[1])).max() <= tol
