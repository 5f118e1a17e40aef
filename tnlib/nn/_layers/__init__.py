"""The MPO layers and what they are built from: cores, inference forms, graph-capture kernels, the recurrent
interface, and the registry of layer kinds (each layer registers itself next to its class).
"""

# every layer module registers its kind when imported: importing any part of this package (the registry
# included) leaves the registry complete
from tnlib.nn._layers import (  # noqa: E402, F401
    _cp_conv,
    _mpo_attention,
    _mpo_cells,
    _mpo_conv,
    _mpo_embedding,
    _mpo_linear,
    _mpo_rnn,
    _quantized_linear,
    _shared_basis,
    _tucker_conv,
)
