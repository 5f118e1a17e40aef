"""The leg conventions (tnlib._legs): interleaving, site and MPO cores, contraction; round trips as properties."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from tnlib._legs import (
    cores_to_matrix,
    cores_to_sites,
    deinterleave,
    deinterleave_order,
    interleave,
    interleave_order,
    sites_to_cores,
)

layouts = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=4)


@settings(max_examples=80, deadline=None)
@given(layouts, st.integers(0, 2**31 - 1))
def test_interleave_round_trip_and_entry_convention(layout, seed):
    out_dims = tuple(o for o, _ in layout)
    in_dims = tuple(i for _, i in layout)
    m, n = math.prod(out_dims), math.prod(in_dims)
    a = np.random.default_rng(seed).standard_normal((m, n))
    t = interleave(a, out_dims, in_dims)
    assert t.shape == tuple(d for o, i in layout for d in (o, i))
    np.testing.assert_array_equal(deinterleave(t, out_dims, in_dims), a)
    # W[i, j] with i, j multi-indices in C order sits at the interleaved (i_1, j_1, ..., i_n, j_n)
    rng = np.random.default_rng(seed + 1)
    row, col = int(rng.integers(m)), int(rng.integers(n))
    i, j = np.unravel_index(row, out_dims), np.unravel_index(col, in_dims)
    assert t[tuple(x for pair in zip(i, j) for x in pair)] == a[row, col]
    k = len(layout)
    assert tuple(np.argsort(interleave_order(k))) == deinterleave_order(k)


@settings(max_examples=40, deadline=None)
@given(layouts, st.integers(0, 2**31 - 1))
def test_cores_sites_round_trip_and_matrix_of_a_decomposition(layout, seed):
    out_dims = tuple(o for o, _ in layout)
    in_dims = tuple(i for _, i in layout)
    a = np.random.default_rng(seed).standard_normal((math.prod(out_dims), math.prod(in_dims)))
    mpo = tnlib.MPO.from_matrix(a, out_dims, in_dims)
    sites = cores_to_sites(mpo.cores)
    assert [s.shape for s in sites] == [(c.shape[0], c.shape[1] * c.shape[2], c.shape[3]) for c in mpo.cores]
    back = sites_to_cores(sites, out_dims, in_dims)
    assert all(np.array_equal(x, y) for x, y in zip(back, mpo.cores))
    np.testing.assert_allclose(cores_to_matrix(mpo.cores), a, rtol=1e-12, atol=1e-12 * np.abs(a).max())
