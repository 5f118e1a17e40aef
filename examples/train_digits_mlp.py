"""Train the small MLP whose weights ship in ``tnlib/data/digits_mlp.npz``.

A 64 -> 512 -> 512 -> 10 ReLU network on scikit-learn's 8x8 handwritten
digits (1,797 images that ship inside scikit-learn; nothing downloads),
trained with Adam in plain NumPy. The hidden 512 x 512 layer is the real
weight matrix that ``examples/compress_layer.py`` decomposes.

Run (needs scikit-learn, which is not a tnlib dependency)::

    pip install scikit-learn
    python examples/train_digits_mlp.py

It rewrites ``tnlib/data/digits_mlp.npz`` with the weights (float32), the
test split (uint8 pixels 0..16) and the test accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SIZES = (64, 512, 512, 10)
EPOCHS = 60
BATCH = 64
LR = 1e-3
WEIGHT_DECAY = 1e-4
OUT = Path(__file__).resolve().parents[1] / "tnlib" / "data" / "digits_mlp.npz"


def forward(params, x):
    acts = [x]
    h = x
    for k in range(len(SIZES) - 1):
        h = h @ params[f"W{k}"].T + params[f"b{k}"]
        if k < len(SIZES) - 2:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return acts


def grads(params, x, y):
    acts = forward(params, x)
    logits = acts[-1]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    delta = p
    delta[np.arange(len(y)), y] -= 1.0
    delta /= len(y)
    g = {}
    for k in reversed(range(len(SIZES) - 1)):
        g[f"W{k}"] = delta.T @ acts[k] + WEIGHT_DECAY * params[f"W{k}"]
        g[f"b{k}"] = delta.sum(axis=0)
        if k > 0:
            delta = (delta @ params[f"W{k}"]) * (acts[k] > 0)
    return g


def main() -> None:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images.reshape(-1, 64), digits.target, test_size=0.25, random_state=0,
        stratify=digits.target,
    )
    rng = np.random.default_rng(0)
    params = {}
    for k, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        bound = np.sqrt(6.0 / fan_in)  # He-uniform for ReLU
        params[f"W{k}"] = rng.uniform(-bound, bound, (fan_out, fan_in))
        params[f"b{k}"] = np.zeros(fan_out)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    xs = x_train / 16.0
    step = 0
    for _ in range(EPOCHS):
        order = rng.permutation(len(xs))
        for start in range(0, len(xs), BATCH):
            idx = order[start : start + BATCH]
            g = grads(params, xs[idx], y_train[idx])
            step += 1
            for key in params:
                m[key] = 0.9 * m[key] + 0.1 * g[key]
                v[key] = 0.999 * v[key] + 0.001 * g[key] ** 2
                mh = m[key] / (1 - 0.9**step)
                vh = v[key] / (1 - 0.999**step)
                params[key] -= LR * mh / (np.sqrt(vh) + 1e-8)
    accuracy = float(np.mean(np.argmax(forward(params, x_test / 16.0)[-1], axis=1) == y_test))
    print(f"test accuracy {accuracy:.4f} on {len(y_test)} images")
    np.savez_compressed(
        OUT,
        **{k: val.astype(np.float32) for k, val in params.items()},
        x_test=x_test.astype(np.uint8),
        y_test=y_test.astype(np.uint8),
        accuracy=np.float64(accuracy),
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
