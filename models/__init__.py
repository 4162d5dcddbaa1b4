"""vlms models: survival data layouts and PyMC model builders.

No knowledge of files, the paper or the cohort's column names lives here.
"""
