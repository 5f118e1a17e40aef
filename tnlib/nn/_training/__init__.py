"""Training after compression: MPOP (freezing and squeezing) and distillation.
"""
