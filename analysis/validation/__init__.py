"""Validation: the independent simulator, simulation-based calibration (``vlms validate``) and
the benchmark (``vlms bench``).

May import: ``analysis.core``, ``analysis.cohort``, ``analysis.paper``, ``analysis.frequentist``,
``analysis.reconstruction``, ``analysis.inference``, ``models``.
"""
