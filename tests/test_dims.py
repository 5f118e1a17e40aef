import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib


@pytest.mark.parametrize(
    "n, k, expected",
    [(1024, 4, (4, 4, 8, 8)), (784, 4, (4, 4, 7, 7)), (4096, 4, (8, 8, 8, 8)), (12, 2, (3, 4)),
     (1, 3, (1, 1, 1)), (7, 3, (1, 1, 7)), (10, 4, (1, 1, 2, 5))],
)
def test_known_factorizations(n, k, expected):
    assert tnlib.factorize(n, k) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 6))
def test_factorize_is_the_most_balanced(n, k):
    f = tnlib.factorize(n, k)
    assert len(f) == k and math.prod(f) == n and list(f) == sorted(f)
    # no factorization has a smaller largest factor (brute force over the largest factor)
    def possible(m, parts, cap):
        if parts == 1:
            return m <= cap
        return any(m % d == 0 and possible(m // d, parts - 1, cap) for d in range(1, min(m, cap) + 1))
    assert not possible(n, k, max(f) - 1)


def test_padded_size():
    assert tnlib.padded_size(1021, 4) == 1024
    assert tnlib.padded_size(1024, 4) == 1024
    assert tnlib.padded_size(30522, 4) >= 30522
    assert tnlib.default_num_cores(1, 1) == 2
    assert tnlib.default_num_cores(4096, 16384) == 5
