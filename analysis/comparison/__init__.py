"""Comparison: posterior hazard ratios against the published and frequentist ones, and
posterior cumulative incidence against Aalen-Johansen (``vlms compare``).

May import: ``analysis.core``, ``analysis.paper``, ``analysis.cohort``, ``analysis.frequentist``,
``analysis.inference``, ``models``.
"""
