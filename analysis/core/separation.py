"""Monotone likelihood (complete separation) of a proportional-hazards covariate, on arrays.

Shared by ``vlms check`` (a Cox fit whose estimate is infinite is reported as such) and
``vlms fit`` (a posterior HR that only the prior bounds gets a note).
"""

from __future__ import annotations

import numpy as np


def likelihood_shape(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> str:
    """How the partial likelihood behaves in ``x`` alone.

    ``"flat"``: every risk set at an event time is constant in ``x`` (the likelihood does not
    depend on its coefficient: not estimable). ``"+inf"`` (``"-inf"``): at every event time
    every event's ``x`` is the largest (smallest) in the risk set, so the likelihood rises
    without bound as beta goes to +inf (-inf): monotone likelihood. ``"finite"`` otherwise.
    """
    t = np.asarray(time, float)
    e = np.asarray(event, float) > 0
    x = np.asarray(x, float)
    if not e.any():
        return "flat"
    order = np.argsort(-t, kind="stable")  # descending time: running max/min = risk-set max/min
    ts, xs = t[order], x[order]
    run_max = np.maximum.accumulate(xs)
    run_min = np.minimum.accumulate(xs)
    # the risk set at time s includes every subject with time >= s, ties included
    uniq_t, first = np.unique(-ts, return_index=True)
    last = np.concatenate((first[1:], [ts.size])) - 1
    grp = np.searchsorted(uniq_t, -ts)
    rmax = run_max[last][grp]
    rmin = run_min[last][grp]
    ev = e[order]
    xe, mx, mn = xs[ev], rmax[ev], rmin[ev]
    if not np.any(mx > mn):
        return "flat"
    if np.all(xe >= mx):
        return "+inf"
    if np.all(xe <= mn):
        return "-inf"
    return "finite"


def monotone_direction(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> int:
    """+1 (-1) if the likelihood in ``x`` alone rises without bound as beta goes to +inf
    (-inf), else 0 (see :func:`likelihood_shape`)."""
    return {"+inf": 1, "-inf": -1}.get(likelihood_shape(time, event, x), 0)
