"""Reconstruction: synthetic cohorts drawn from a generative model of a surgical series and
calibrated to the paper's numbers, with their calibration report (``vlms reconstruct``).

May import: ``analysis.core``, ``analysis.paper``, ``analysis.cohort``, ``analysis.frequentist``.
"""
