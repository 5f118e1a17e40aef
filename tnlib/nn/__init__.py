"""PyTorch adapters: MPO layers, the baselines papers compare against, MPOP fine-tuning.

Importing this package needs torch (the ``torch`` extra); the rest of tnlib
never imports it. The adapters only hold parameters and call the
framework-free core (:func:`tnlib.apply.apply_cores`, :func:`tnlib.lstm_forward`,
:class:`tnlib.MPO`): all tensor-network arithmetic lives there.
"""

from .baselines import (
    GradualPruner,
    LowRankLSTM,
    TTLSTM,
    count_parameters,
    match_compression,
    prune_magnitude,
)
from .compress import LayerReport, compress
from .factored_linear import LowRankLinear, TTLinear
from .linear import MPOLinear
from .lstm import MPOLSTM
from .mpop import DimensionSqueezer, central_index, freeze_central

__all__ = [
    "MPOLinear",
    "MPOLSTM",
    "LowRankLSTM",
    "TTLSTM",
    "LowRankLinear",
    "TTLinear",
    "prune_magnitude",
    "GradualPruner",
    "count_parameters",
    "match_compression",
    "central_index",
    "freeze_central",
    "DimensionSqueezer",
    "compress",
    "LayerReport",
]
