"""tnlib.lstm_forward / gru_forward with MPO weights (planned once per sequence) equal the dense recurrences."""

import numpy as np
import pytest

import tnlib


@pytest.mark.parametrize("bond", [2, 64])  # merged halves, and a bond large enough for the dense form
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_mpo_weights_give_the_dense_recurrence(kind, bond):
    rng = np.random.default_rng(bond)
    gates, hidden, n_in = (4, 16, 12) if kind == "lstm" else (3, 16, 12)
    w_ih = rng.standard_normal((gates * hidden, n_in)) / 4
    w_hh = rng.standard_normal((gates * hidden, hidden)) / 4
    t = tnlib.Truncation(max_bond=bond)
    mpo_ih = tnlib.MPO.from_matrix(w_ih, (gates * 4, 4), (4, 3), truncation=t)
    mpo_hh = tnlib.MPO.from_matrix(w_hh, (gates * 4, 4), (4, 4), truncation=t)
    x = rng.standard_normal((9, 3, n_in))
    run = tnlib.lstm_forward if kind == "lstm" else tnlib.gru_forward
    got = run(x, mpo_ih, mpo_hh)[0]
    want = run(x, mpo_ih.to_matrix(), mpo_hh.to_matrix())[0]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_a_zero_padded_mpo_weight_is_applied_through_mpo_apply():
    rng = np.random.default_rng(0)
    w_hh = rng.standard_normal((4 * 5, 5))  # 20 x 5: padded to 24 x 6
    mpo_hh = tnlib.MPO.from_matrix(w_hh, (6, 4), (3, 2), pad=True)
    x = rng.standard_normal((4, 2, 3))
    w_ih = rng.standard_normal((20, 3))
    got = tnlib.lstm_forward(x, w_ih, mpo_hh)[0]
    np.testing.assert_allclose(got, tnlib.lstm_forward(x, w_ih, w_hh)[0], atol=1e-12)
