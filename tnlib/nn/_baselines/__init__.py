"""The methods papers compare against, re-implemented: magnitude pruning, low-rank and tensor-train layers,
and parameter counts at a target ratio.
"""
