"""PyTorch adapters: MPO layers, the baselines papers compare against, MPOP fine-tuning.

Importing this package needs torch (the ``torch`` extra); the rest of tnlib
never imports it. The adapters only hold parameters and call the
framework-free core (the kernels of ``tnlib._apply``, :func:`tnlib.lstm_forward`,
:class:`tnlib.MPO`): all tensor-network arithmetic lives there.

One module per method: ``mpo_linear``, ``mpo_rnn`` and ``mpo_cells`` (MPO layers),
``pruning``, ``lowrank``, ``tensor_train`` (the baselines), ``matching``
(parameter counts at a target ratio), ``mpop`` (MPOP fine-tuning) and
``compress`` (whole models), ``export`` (ONNX files).
"""

from ._cores import central_index
from .calibration import record_grams
from .compress import LayerReport, compress
from .distill import distill
from .export import export_onnx
from .lowrank import LowRankLinear, LowRankLSTM
from .matching import count_parameters, match_compression, stored_bytes
from .mpo_cells import MPOGRUCell, MPOLSTMCell
from .mpo_linear import MPOLinear
from .mpo_rnn import MPOGRU, MPOLSTM
from .mpop import DimensionSqueezer, freeze_central
from .pruning import GradualPruner, prune_magnitude
from .serialization import load, save
from .tensor_train import TTLSTM, TTLinear

__all__ = [
    "MPOLinear",
    "MPOLSTM",
    "MPOGRU",
    "MPOLSTMCell",
    "MPOGRUCell",
    "LowRankLSTM",
    "TTLSTM",
    "LowRankLinear",
    "TTLinear",
    "prune_magnitude",
    "GradualPruner",
    "count_parameters",
    "match_compression",
    "stored_bytes",
    "central_index",
    "freeze_central",
    "DimensionSqueezer",
    "compress",
    "record_grams",
    "distill",
    "save",
    "load",
    "LayerReport",
    "export_onnx",
]
