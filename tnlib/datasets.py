"""A real trained layer that ships with tnlib, for examples and tests.

``digits_mlp.npz`` holds a 64 -> 512 -> 512 -> 10 ReLU network trained on
scikit-learn's 8x8 digits by ``examples/train_digits_mlp.py`` (in the source
tree), with the 450-image test split it was evaluated on.
"""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple

import numpy as np

__all__ = ["ExampleMLP", "load_example_mlp"]


class ExampleMLP(NamedTuple):
    """Weights of the shipped digits MLP and its test split.

    Attributes
    ----------
    weights : tuple of float32 arrays
        ``(512, 64)``, ``(512, 512)``, ``(10, 512)``, in the ``nn.Linear``
        layout ``(out_features, in_features)``.
    biases : tuple of float32 arrays
    x_test : uint8 array, shape (450, 64)
        Pixels 0..16; the network takes ``x_test / 16``.
    y_test : uint8 array, shape (450,)
    accuracy : float
        Test accuracy of the trained network.

    Examples
    --------
    >>> import tnlib
    >>> mlp = tnlib.load_example_mlp()
    >>> [w.shape for w in mlp.weights], mlp.x_test.shape
    ([(512, 64), (512, 512), (10, 512)], (450, 64))
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    x_test: np.ndarray
    y_test: np.ndarray
    accuracy: float

    def predict(self, x: np.ndarray, weights: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
        """Class predictions for pixel rows ``x``, optionally with replaced weights."""
        h = np.asarray(x, dtype=np.float64) / 16.0
        ws = self.weights if weights is None else weights
        for k, (w, b) in enumerate(zip(ws, self.biases)):
            h = h @ np.asarray(w, dtype=np.float64).T + b
            if k < len(ws) - 1:
                h = np.maximum(h, 0.0)
        return np.argmax(h, axis=1)


def load_example_mlp() -> ExampleMLP:
    """Load the trained digits MLP that ships with tnlib.

    Examples
    --------
    >>> import tnlib
    >>> mlp = tnlib.load_example_mlp()
    >>> mlp.weights[1].shape
    (512, 512)
    >>> bool((mlp.predict(mlp.x_test) == mlp.y_test).mean() == mlp.accuracy)
    True
    """
    with resources.files("tnlib").joinpath("data/digits_mlp.npz").open("rb") as fh:
        with np.load(fh) as data:
            return ExampleMLP(
                weights=(data["W0"], data["W1"], data["W2"]),
                biases=(data["b0"], data["b1"], data["b2"]),
                x_test=data["x_test"],
                y_test=data["y_test"],
                accuracy=float(data["accuracy"]),
            )
