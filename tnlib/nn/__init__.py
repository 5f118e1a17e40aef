"""PyTorch adapters: MPO layers, the baselines papers compare against, MPOP fine-tuning.

Importing this package needs torch (the ``torch`` extra); the rest of tnlib
never imports it. The adapters only hold parameters and call the
framework-free core (the kernels of ``tnlib._apply``, :func:`tnlib.lstm_forward`,
:class:`tnlib.MPO`): all tensor-network arithmetic lives there.

The public API is what this module exports (``__all__``); the implementation
is one private module per method: ``_mpo_linear``, ``_mpo_rnn`` and
``_mpo_cells``, ``_mpo_conv``, ``_mpo_embedding`` (MPO layers, each registering its kind in
``_kinds``), ``_pruning``, ``_lowrank``, ``_tensor_train``
(the baselines), ``_matching`` (parameter counts at a target ratio), ``_mpop``
(MPOP fine-tuning), ``_compress`` (whole models), ``_calibration`` (input
Grams), ``_distill``, ``_serialization`` (save/load) and ``_export`` (ONNX
files). ``import tnlib`` makes this package reachable as ``tnlib.nn``; torch is
imported only when it is first used.
"""

from ._calibration import record_grams
from ._compress import compress
from ._cores import central_index
from ._distill import distill
from ._export import export_onnx
from ._layer_report import LayerReport
from ._lowrank import LowRankLinear, LowRankLSTM
from ._matching import count_parameters, match_compression, stored_bytes
from ._mpo_cells import MPOGRUCell, MPOLSTMCell
from ._mpo_conv import MPOConv1d, MPOConv2d
from ._mpo_embedding import MPOEmbedding
from ._mpo_linear import MPOLinear
from ._mpo_rnn import MPOGRU, MPOLSTM, gate_layout
from ._mpop import DimensionSqueezer, freeze_central
from ._pruning import GradualPruner, prune_magnitude
from ._serialization import load, save
from ._tensor_train import TTLSTM, TTLinear

__all__ = [
    "MPOLinear",
    "MPOLSTM",
    "MPOGRU",
    "MPOLSTMCell",
    "MPOGRUCell",
    "MPOConv1d",
    "MPOConv2d",
    "MPOEmbedding",
    "gate_layout",
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
