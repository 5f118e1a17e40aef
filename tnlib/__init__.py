"""tnlib: tensor-network decomposition of matrices (MPO) and tensors (MPS).

Backend-agnostic: every function finds its array library (NumPy, CuPy,
PyTorch, any Array-API library) from its inputs and returns results in it.
"""

import importlib
from typing import Any

from . import qtt
from ._chain import MAX_DENSE_SIZE
from ._out_of_core import open_npy
from ._versions import show_versions, versions
from .budget import allocate_bonds
from .contraction import ContractionPlan, contract, contraction_plan
from .cross import CrossReport, cross, cross_apply
from .datasets import ExampleMLP, load_example_mlp
from .dims import choose_dims, default_num_cores, factorize, padded_size
from .io import load, save
from .layout_search import Layout, LayoutRow, LayoutSearch, layouts
from .metric import Metric
from .mpo import MPO
from .mps import MPS
from .objective import Objective
from .parallel import decompose_many
from .quantization import Quantization, QuantizedMatrix, quantize, quantize_low_rank
from .rnn import gru_forward, lstm_forward
from .spectra import Spectrum, Tradeoff, spectrum, tradeoff
from .svd import register_svd, svd_methods, truncated_svd
from .truncation import SketchCertificate, TruncatedSVD, Truncation, TruncationReport

__version__ = "0.1.0"
"""The one place the version is written (``pyproject.toml`` reads it from here)."""


def __getattr__(name: str) -> Any:
    """``tnlib.nn`` on first use, so that ``import tnlib`` never imports torch."""
    if name == "nn":
        return importlib.import_module(".nn", __name__)
    raise AttributeError(f"module 'tnlib' has no attribute {name!r}")


__all__ = [
    "open_npy",
    "MPS",
    "MPO",
    "Layout",
    "LayoutRow",
    "LayoutSearch",
    "layouts",
    "Truncation",
    "Metric",
    "Quantization",
    "QuantizedMatrix",
    "quantize",
    "quantize_low_rank",
    "Objective",
    "TruncatedSVD",
    "TruncationReport",
    "SketchCertificate",
    "truncated_svd",
    "allocate_bonds",
    "factorize",
    "choose_dims",
    "default_num_cores",
    "padded_size",
    "register_svd",
    "svd_methods",
    "MAX_DENSE_SIZE",
    "contract",
    "cross",
    "cross_apply",
    "CrossReport",
    "qtt",
    "contraction_plan",
    "ContractionPlan",
    "Spectrum",
    "spectrum",
    "Tradeoff",
    "tradeoff",
    "decompose_many",
    "lstm_forward",
    "gru_forward",
    "save",
    "load",
    "ExampleMLP",
    "load_example_mlp",
    "show_versions",
    "versions",
]
