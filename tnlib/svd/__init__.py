"""Everything behind ``svd=``: the registry, the LAPACK and randomized routes,
the certified fast routes of ``svd="auto"``, and truncated SVDs of one matrix.

``register_svd`` / ``svd_methods`` / ``truncated_svd`` are re-exported by
:mod:`tnlib`; the rest is used by the sweeps.
"""

from ._certified import FastFactor, fast_left_factor
from ._registry import SVDMethod, check_svd, left_factor, register_svd, svd_methods, thin_svd
from ._truncate import LeftFactor, truncate_left, truncated_svd

__all__ = [
    "SVDMethod",
    "register_svd",
    "svd_methods",
    "check_svd",
    "thin_svd",
    "left_factor",
    "FastFactor",
    "fast_left_factor",
    "LeftFactor",
    "truncate_left",
    "truncated_svd",
]
