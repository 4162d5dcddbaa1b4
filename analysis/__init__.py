"""vlms analysis: the paper, the cohort, frequentist checks, fitting, diagnostics and reports."""
