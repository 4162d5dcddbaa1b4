"""Core: the one-line input error, atomic writes, the parallel map, CSV input and table helpers.

Used by every stage; imports nothing from ``analysis`` or ``models``.
"""
