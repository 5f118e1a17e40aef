"""Quantized storage: codes, scales, round-to-nearest, GPTQ, low-rank splits, packing."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from tnlib.quantization import BITS, Quantization, pack, relative_error, unpack


def _rng(seed=0):
    return np.random.default_rng(seed)


@settings(max_examples=60, deadline=None)
@given(bits=st.sampled_from(BITS), count=st.integers(0, 300), seed=st.integers(0, 2**16))
def test_pack_unpack_round_trip(bits, count, seed):
    codes = np.random.default_rng(seed).integers(0, 2**bits, size=count)
    packed = pack(codes, bits)
    assert packed.dtype == np.uint8 and packed.nbytes == (count * bits + 7) // 8
    assert np.array_equal(unpack(packed, bits, count), codes)


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from(BITS), rows=st.integers(1, 9), groups=st.integers(1, 4), size=st.sampled_from([4, 8, 16]),
       seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_round_to_nearest_is_within_one_step_and_counts_its_bytes(bits, rows, groups, size, seed, scale):
    w = np.random.default_rng(seed).standard_normal((rows, groups * size)) * scale
    q = tnlib.quantize(w, Quantization(bits, size))
    step = np.ldexp(np.repeat(q.scales.astype(np.float64), size, axis=1), q.exponent)
    assert np.all(np.abs(q.dequantize() - w) <= step * 1.0 + 1e-12 * scale)
    scales, zeros = rows * groups * 2, (rows * groups * bits + 7) // 8
    assert q.stored_bytes == (rows * groups * size * bits + 7) // 8 + scales + zeros + 2  # + the int16 exponent
    assert q.codes.max() <= 2**bits - 1


@settings(max_examples=30, deadline=None)
@given(bits=st.sampled_from(BITS), seed=st.integers(0, 2**16), k=st.integers(-900, 900), gram=st.booleans())
def test_codes_do_not_change_under_a_power_of_two(bits, seed, k, gram):
    """Hostile scales (weights near 1e-270 or 1e270) are stored as well as unit ones: only the exponent moves."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((5, 32))
    c = None
    if gram:
        x = rng.standard_normal((100, 32))
        c = x.T @ x / 100
    a = tnlib.quantize(w, Quantization(bits, 16), gram=c)
    b = tnlib.quantize(np.ldexp(w, k), Quantization(bits, 16), gram=c)
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.zeros, b.zeros)
    assert np.array_equal(a.scales, b.scales) and b.exponent == a.exponent + k
    assert np.array_equal(b.dequantize(), np.ldexp(a.dequantize(), k))


def test_representable_matrix_is_stored_exactly():
    rng = _rng()
    codes = rng.integers(0, 256, size=(6, 40))
    codes[:, 0], codes[:, 1] = 0, 255  # the range is [0, 255] codes in every row
    scale = np.float16(1.5).astype(np.float64)  # a peak of 155 * 1.5 = 232.5 keeps the scale at 2**-2 of it
    w = (codes - 100) * scale
    q = tnlib.quantize(w, Quantization(8, None))
    assert np.array_equal(q.dequantize(), w)


def test_gptq_with_a_white_gram_is_round_to_nearest():
    w = _rng(1).standard_normal((12, 64))
    for bits in BITS:
        rtn = tnlib.quantize(w, Quantization(bits, 32))
        white = tnlib.quantize(w, Quantization(bits, 32), gram=np.eye(64) * 3.0)
        assert np.array_equal(rtn.codes, white.codes) and np.array_equal(rtn.scales, white.scales)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_gptq_beats_round_to_nearest_on_correlated_inputs_held_out(bits):
    rng = _rng(2)
    mix = rng.standard_normal((64, 64))
    w = rng.standard_normal((48, 64))
    fit_rows, test_rows = rng.standard_normal((2000, 64)) @ mix, rng.standard_normal((2000, 64)) @ mix
    c_fit, c_test = fit_rows.T @ fit_rows / 2000, test_rows.T @ test_rows / 2000
    q = Quantization(bits, 32)
    rtn = relative_error(w, tnlib.quantize(w, q).dequantize(), c_test)
    gptq = relative_error(w, tnlib.quantize(w, q, gram=c_fit).dequantize(), c_test)
    assert gptq < 0.8 * rtn


def test_low_rank_split_of_a_low_rank_matrix():
    rng = _rng(3)
    w = rng.standard_normal((96, 12)) @ rng.standard_normal((12, 64))
    u, v = tnlib.quantize_low_rank(w, 16, Quantization(8, 16))
    assert u.shape == (96, 16) and v.shape == (16, 64)
    assert relative_error(w, u.dequantize() @ v.dequantize()) < 0.01
    x = rng.standard_normal((3000, 64)) @ rng.standard_normal((64, 64))
    c = x.T @ x / 3000
    u4, v4 = tnlib.quantize_low_rank(w, 16, Quantization(4, 16), gram=c)
    plain_u, plain_v = tnlib.quantize_low_rank(w, 16, Quantization(4, 16))
    assert relative_error(w, u4.dequantize() @ v4.dequantize(), c) < relative_error(
        w, plain_u.dequantize() @ plain_v.dequantize(), c)


def test_quantization_bytes_and_repr():
    q = Quantization(3, 64)
    assert q.levels == 7 and q.groups((10, 128)) == 2
    assert q.stored_bytes((10, 128)) == 480 + 40 + 8 + 2
    m = tnlib.quantize(_rng().standard_normal((10, 128)), q)
    assert "bits=3" in repr(m) and "stored_bytes=530" in repr(m)
    with pytest.raises(AttributeError):
        m.quantization = Quantization()  # frozen
    assert not m.codes.flags.writeable


@pytest.mark.parametrize("bits", [5, 1, 16, 4.0, True, "4", None])
def test_bits_outside_the_list_are_refused(bits):
    with pytest.raises(ValueError, match=r"bits=.*expected one of 2, 3, 4, 8"):
        Quantization(bits, 64)


@pytest.mark.parametrize("group", [0, -8, 2.5, True])
def test_bad_group_sizes_are_refused(group):
    with pytest.raises((TypeError, ValueError), match="group_size"):
        Quantization(4, group)


def test_group_size_must_divide_the_columns():
    with pytest.raises(ValueError, match=r"group_size=64 does not divide the 100 columns"):
        tnlib.quantize(np.ones((3, 100)), Quantization(4, 64))
    with pytest.raises(ValueError, match=r"group_size=16 does not divide the 20 columns"):
        tnlib.quantize_low_rank(np.ones((40, 64)), 20, Quantization(4, 16))


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan]]), "NaN or infinite"),
    (np.ones(4), "must be 2-D"),
    (np.ones((0, 4)), "non-empty"),
    (np.ones((2, 4), dtype=np.int64), "dtype int64"),
    (np.ones((2, 4), dtype=np.complex128), "real weights"),
])
def test_bad_matrices_are_refused(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        tnlib.quantize(bad, Quantization(4, None))


def test_a_group_too_small_for_a_float16_scale_is_stored_as_zeros():
    w = _rng().standard_normal((2, 64))
    w[0, :32] = 1e-20  # a dead group beside live ones
    q = tnlib.quantize(w, Quantization(4, 32))
    assert np.all(q.dequantize()[0, :32] == 0) and relative_error(w, q.dequantize()) < 0.1


def test_bad_grams_and_options_are_refused():
    w = _rng().standard_normal((4, 8))
    with pytest.raises(ValueError, match=r"gram has shape \(4, 4\); expected \(8, 8\)"):
        tnlib.quantize(w, Quantization(4, 8), gram=np.eye(4))
    with pytest.raises(ValueError, match="gram is not positive semi-definite"):
        tnlib.quantize(w, Quantization(4, 8), gram=-np.eye(8))
    with pytest.raises(ValueError, match="damping"):
        tnlib.quantize(w, Quantization(4, 8), gram=np.eye(8), damping=2.0)
    with pytest.raises(TypeError, match="tnlib.Quantization"):
        tnlib.quantize(w, 4)
    with pytest.raises(ValueError, match=r"rank=9 exceeds"):
        tnlib.quantize_low_rank(w, 9, Quantization(8, None))


def test_quantized_matrix_checks_what_it_holds():
    q = Quantization(2, None)
    ok = dict(codes=np.zeros((2, 4), np.uint8), scales=np.ones((2, 1), np.float16), zeros=np.zeros((2, 1), np.uint8))
    tnlib.QuantizedMatrix(**ok, quantization=q)
    with pytest.raises(ValueError, match="beyond 3, the largest 2-bit code"):
        tnlib.QuantizedMatrix(**{**ok, "codes": np.full((2, 4), 4, np.uint8)}, quantization=q)
    with pytest.raises(TypeError, match="scales has dtype float32; expected float16"):
        tnlib.QuantizedMatrix(**{**ok, "scales": np.ones((2, 1), np.float32)}, quantization=q)
    with pytest.raises(ValueError, match=r"zeros has shape \(2, 2\); expected \(2, 1\)"):
        tnlib.QuantizedMatrix(**{**ok, "zeros": np.zeros((2, 2), np.uint8)}, quantization=q)
    with pytest.raises(ValueError, match="NaN or infinite"):
        tnlib.QuantizedMatrix(**{**ok, "scales": np.full((2, 1), np.inf, np.float16)}, quantization=q)
    with pytest.raises(ValueError, match="exponent=70000 is invalid; expected an int16"):
        tnlib.QuantizedMatrix(**ok, quantization=q, exponent=70000)


def test_pack_refuses_codes_out_of_range():
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 8\)"):
        pack(np.array([8]), 3)
    with pytest.raises(ValueError, match="packed holds 1 bytes; 5 codes of 3 bits take 2"):
        unpack(np.zeros(1, np.uint8), 3, 5)


def test_torch_and_other_libraries_are_read_on_the_host():
    torch = pytest.importorskip("torch")
    w = _rng().standard_normal((4, 16))
    a = tnlib.quantize(torch.from_numpy(w), Quantization(4, 8))
    b = tnlib.quantize(w, Quantization(4, 8))
    assert np.array_equal(a.codes, b.codes)
    assert np.array_equal(tnlib.quantize(w.astype(np.float32), Quantization(8, None)).codes,
                          tnlib.quantize(w.astype(np.float32).astype(np.float64), Quantization(8, None)).codes)


def _gptq_eager(w, c, q, damping=0.01):
    """GPTQ as Frantar et al. write it (Algorithm 1 without lazy batches): the matrix brought to a peak in
    [2**9, 2**10), each column rounded with min-max group parameters (float16 scales) taken when its group begins,
    its error spread at once over every later column by the damped inverse Gram's Cholesky factor."""
    from tnlib.quantization import gptq_factor

    u = gptq_factor(c, damping)
    rows, cols = w.shape
    w = np.ldexp(w, -(int(np.frexp(np.abs(w).max())[1]) - 10))
    width = cols if q.group_size is None else q.group_size
    codes = np.zeros((rows, cols), dtype=np.uint8)
    scales = np.zeros((rows, cols // width), dtype=np.float16)
    zeros = np.zeros((rows, cols // width), dtype=np.uint8)
    for i in range(cols):
        g = i // width
        if i % width == 0:
            block = w[:, i:i + width]
            lo, hi = np.minimum(block.min(axis=1), 0.0), np.maximum(block.max(axis=1), 0.0)
            scale = ((hi - lo) / q.levels).astype(np.float16)
            scales[:, g] = np.where(scale == 0, np.float16(1.0), scale)
            zeros[:, g] = np.clip(np.round(-lo / scales[:, g].astype(np.float64)), 0, q.levels)
        s = scales[:, g].astype(np.float64)
        code = np.clip(np.round(w[:, i] / s + zeros[:, g]), 0, q.levels)
        codes[:, i] = code
        e = (w[:, i] - s * (code - zeros[:, g])) / u[i, i]
        w[:, i + 1:] -= np.outer(e, u[i, i + 1:])
    return codes, scales, zeros


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(BITS), st.sampled_from([None, 16, 32]), st.integers(1, 6), st.integers(1, 12),
       st.integers(0, 10**6))
def test_gptq_is_the_algorithm_of_the_paper(bits, group, rows, groups, seed):
    """``quantize`` with a Gram (blocks of 128 columns, errors applied lazily) gives the codes, scales and zero
    points of GPTQ applied column by column, for columns across several blocks and groups inside and across them."""
    rng = np.random.default_rng(seed)
    cols = groups * (group or 16) + (0 if group else int(rng.integers(0, 150)))
    x = rng.standard_normal((cols + 20, cols)) * np.geomspace(1.0, 0.05, cols)
    c = x.T @ x / len(x)
    w = rng.standard_normal((rows, cols))
    q = Quantization(bits=bits, group_size=group)
    got = tnlib.quantize(w, q, gram=c)
    for a, b in zip((got.codes, got.scales, got.zeros), _gptq_eager(w, c, q)):
        assert np.array_equal(np.asarray(a), b)
