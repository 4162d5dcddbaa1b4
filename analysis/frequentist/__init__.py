"""Frequentist analyses on lifelines (Kaplan-Meier, log-rank, Cox, Aalen-Johansen, RMST), the
paper's analyses re-run on any cohort, and ``vlms check``.

May import: ``analysis.core``, ``analysis.paper``, ``analysis.cohort``.
"""
