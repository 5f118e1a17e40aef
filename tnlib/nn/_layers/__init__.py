"""The MPO layers and what they are built from: cores, inference forms, graph-capture kernels, the recurrent
interface, and the registry of layer kinds (each layer registers itself next to its class).
"""
