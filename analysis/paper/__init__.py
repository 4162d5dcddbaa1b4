"""The paper: its published numbers (``data/published.toml``) and the audit of their
contradictions.

May import: ``analysis.core``.
"""
