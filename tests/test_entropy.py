"""Renyi and von Neumann entropies of a spectrum: stable near alpha = 1 and for large alpha."""

import numpy as np
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
