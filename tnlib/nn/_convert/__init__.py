"""Whole-model compression: calibration Grams, the orchestration of ``compress``, its global budget,
the sensitivities that weight it and the per-layer reports.
"""
