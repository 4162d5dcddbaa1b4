"""Inference: the registry of fits (declarative), the data of a fit, the model kinds, the
sampling engine (nutpie, one compilation per structure), ``vlms fit``, the diagnostics (the only
ArviZ module), prior sensitivity and the summary-level posterior.

May import: ``analysis.core``, ``analysis.cohort``, ``models``.
"""
