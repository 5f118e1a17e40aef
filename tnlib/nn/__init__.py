"""PyTorch adapters: MPO layers, the baselines papers compare against, MPOP fine-tuning.

Importing this package needs torch (the ``torch`` extra); the rest of tnlib
never imports it. The adapters only hold parameters and call the
framework-free core (the kernels of ``tnlib._apply``, :func:`tnlib.lstm_forward`,
:class:`tnlib.MPO`): all tensor-network arithmetic lives there.

The public API is what this module exports (``__all__``); the implementation
is private and grouped by role: ``_layers`` (the MPO layers, one module per
kind, each registering itself in ``_layers/_kinds.py``, and the cores, inference
forms and graph-capture kernels they share), ``_convert`` (whole-model
``compress``, calibration Grams, the global budget and its sensitivities, the
layer reports), ``_baselines`` (pruning, low-rank and tensor-train layers,
parameter counts at a target ratio), ``_training`` (MPOP, distillation) and
``_io`` (save/load, ONNX). ``import tnlib`` makes this package reachable as ``tnlib.nn``; torch is
imported only when it is first used.
"""

from tnlib._optional import optional

optional("torch", "torch", "tnlib.nn")  # a missing torch: one line naming the extra, not a traceback from deep inside

from ._baselines._lowrank import LowRankLinear, LowRankLSTM
from ._baselines._matching import count_parameters, match_compression, stored_bytes
from ._baselines._pruning import GradualPruner, prune_magnitude
from ._baselines._tensor_train import TTLSTM, TTLinear
from ._convert._calibration import record_grams
from ._convert._compress import compress
from ._convert._layer_report import LayerReport
from ._convert._plot_reports import plot_compression
from ._io._export import export_onnx
from ._io._serialization import load, save
from ._layers._cores import central_index
from ._layers._cp_conv import CPConv1d, CPConv2d
from ._layers._mpo_attention import MPOMultiheadAttention
from ._layers._mpo_cells import MPOGRUCell, MPOLSTMCell
from ._layers._mpo_conv import MPOConv1d, MPOConv2d
from ._layers._mpo_embedding import MPOEmbedding
from ._layers._mpo_linear import MPOLinear
from ._layers._mpo_rnn import MPOGRU, MPOLSTM, gate_layout
from ._layers._quantized_attention import QuantizedMultiheadAttention
from ._layers._quantized_conv import QuantizedConv1d, QuantizedConv2d
from ._layers._quantized_linear import QuantizedLinear
from ._layers._quantized_rnn import QuantizedGRU, QuantizedGRUCell, QuantizedLSTM, QuantizedLSTMCell
from ._layers._shared_basis import SharedBasisLinear
from ._layers._tucker_conv import TuckerConv1d, TuckerConv2d
from ._training._distill import distill
from ._training._mpop import DimensionSqueezer, freeze_central

__all__ = [
    "MPOLinear",
    "MPOLSTM",
    "MPOGRU",
    "MPOLSTMCell",
    "MPOGRUCell",
    "MPOConv1d",
    "MPOConv2d",
    "MPOEmbedding",
    "MPOMultiheadAttention",
    "QuantizedLinear",
    "QuantizedLSTM",
    "QuantizedGRU",
    "QuantizedLSTMCell",
    "QuantizedGRUCell",
    "QuantizedConv1d",
    "QuantizedConv2d",
    "QuantizedMultiheadAttention",
    "SharedBasisLinear",
    "CPConv1d",
    "CPConv2d",
    "TuckerConv1d",
    "TuckerConv2d",
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
    "plot_compression",
    "export_onnx",
]
