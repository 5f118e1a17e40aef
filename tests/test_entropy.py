"""Renyi and von Neumann entropies of a spectrum: stable near alpha = 1 and for large alpha."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tnlib._entropy import renyi_entropy

spectra = st.lists(st.floats(1e-6, 1.0), min_size=2, max_size=30).map(lambda v: np.sort(np.array(v))[::-1])


@settings(max_examples=60, deadline=None)
@given(spectra, st.floats(1e-15, 1e-6))
def test_continuous_at_alpha_one(s, delta):
    vn = float(renyi_entropy(s, 1.0))
    for alpha in (1 - delta, 1 + delta):
        assert abs(float(renyi_entropy(s, alpha)) - vn) <= 1e-5 * max(1.0, vn)


@settings(max_examples=60, deadline=None)
@given(spectra)
def test_non_increasing_in_alpha_and_bounded_by_min_entropy(s):
    alphas = [0.5, 0.999, 1.0, 1.001, 2.0, 10.0, 1000.0]
    values = [float(renyi_entropy(s, a)) for a in alphas]
    assert all(a >= b - 1e-9 for a, b in zip(values, values[1:]))
    s_inf = float(renyi_entropy(s, float("inf")))
    assert s_inf - 1e-12 <= values[-1] <= 1000 / 999 * s_inf + 1e-12  # S_inf <= S_a <= a/(a-1) S_inf


def test_known_values():
    s = np.sqrt(np.array([0.5, 0.25, 0.25]))
    assert np.isclose(float(renyi_entropy(s, 1.0)), 1.5 * np.log(2))
    assert np.isclose(float(renyi_entropy(s, 2.0)), -np.log(0.375))
    assert np.isclose(float(renyi_entropy(s, 1000.0)), np.log(2) * 1000 / 999, rtol=1e-9)
    assert float(renyi_entropy(np.zeros(3), 2.0)) == 0.0


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.floats(0.0, 1e3), min_size=0, max_size=12), min_size=1, max_size=6),
       alpha=st.sampled_from([0.5, 1.0, 2.0, 7.0, float("inf")]))
def test_rows_of_a_zero_padded_array_are_the_spectra_one_by_one(rows, alpha):
    width = max(len(r) for r in rows)
    padded = np.array([r + [0.0] * (width - len(r)) for r in rows]).reshape(len(rows), width)
    got = renyi_entropy(padded, alpha)
    assert got.shape == (len(rows),)
    for value, row in zip(got, rows):
        one = renyi_entropy(np.array(row, dtype=float), alpha)
        assert float(value) == pytest.approx(float(one), rel=1e-12, abs=1e-12)
