"""Reporting: the figures and the self-contained HTML page (``vlms report``); reads saved files
only (the cohort, the saved fits, the tables).

May import every stage except ``analysis.validation`` and ``analysis.reconstruction`` (whose
outputs it reads from files).
"""
