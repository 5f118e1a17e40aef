"""tnlib: tensor-network decomposition of matrices (MPO) and tensors (MPS).

Backend-agnostic: every function finds its array library (NumPy, CuPy,
PyTorch, any Array-API library) from its inputs and returns results in it.
"""

from ._chain import MAX_DENSE_SIZE
from .batch import decompose_many
from .budget import allocate_bonds
from .contraction import ContractionPlan, contract, contraction_plan
from .examples import ExampleMLP, load_example_mlp
from .factorize import choose_dims, default_num_cores, factorize, padded_size
from .io import load, save
from .linalg import register_svd, svd_methods
from .mpo import MPO
from .mps import MPS
from .recurrent import lstm_forward
from .spectra import Spectrum, Tradeoff, spectrum, tradeoff
from .truncation import (
    Truncation,
    TruncatedSVD,
    TruncationReport,
    truncated_svd,
)

__version__ = "0.1.0"

__all__ = [
    "MPS",
    "MPO",
    "Truncation",
    "TruncatedSVD",
    "TruncationReport",
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
    "contraction_plan",
    "ContractionPlan",
    "Spectrum",
    "spectrum",
    "Tradeoff",
    "tradeoff",
    "decompose_many",
    "lstm_forward",
    "save",
    "load",
    "ExampleMLP",
    "load_example_mlp",
]
