"""Sampling diagnostics with ArviZ: summaries, the quality bar, and plots (``vlms diagnose``).

This is the only module that imports ArviZ, so a move to ArviZ 1 changes one file.

The bar every saved fit must meet (``vlms diagnose --strict`` exits 1 otherwise): on every
posterior variable, derived ones included, R-hat <= 1.01 and bulk and tail ESS >= 400; zero
divergent transitions. BFMI (< 0.3 flags poor energy exploration) and tree-depth saturation are
reported alongside.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
import arviz as az  # noqa: E402

# ArviZ logs "shape validation failed" (one chain) through its own Logger object (``az._log``,
# not registered with logging): the bar reports it (R-hat cannot be computed from one chain)
getattr(az, "_log", logging.getLogger("arviz")).setLevel(logging.ERROR)

from analysis.core.atomic import atomic_path, write_text  # noqa: E402
from analysis.core.errors import VlmsInputError  # noqa: E402
from analysis.core.parallel import fork_starmap  # noqa: E402

RHAT_MAX = 1.01
ESS_MIN = 400.0
BFMI_MIN = 0.3
HDI_PROB = 0.95
KEY_VARS = ("beta", "rw_sigma", "cause_rw_sigma", "effect_rho", "log_h_level_z")
"""Parameters shown in the trace and rank figures (those present; see :func:`_key_vars`)."""
MAX_RANK_PANELS = 8


_LOADED: dict[tuple, Any] = {}
"""Fits read by this process, by file identity (:func:`load_fit`)."""
_LOADED_MAX = 64


def load_fit(path: str | Path) -> Any:
    """Read a saved fit (``reports/fits/<name>.nc``) as InferenceData.

    A file this process has read already, unchanged since (same inode, size and modification
    time: outputs are replaced by renaming, so a rewritten file is a new inode), is not read
    again: opening the NetCDF costs about 0.4 s, and ``vlms compare`` and ``vlms report`` each
    read most fits two or three times. Each call returns its own shallow copy (new groups and
    attributes; the arrays are shared and must not be written to). Writers must replace a fit
    file (:func:`analysis.core.atomic.atomic_path`), never rewrite it in place.
    """
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _LOADED:
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = az.from_netcdf(str(path))
    idata = _LOADED[key]
    return make_idata(**{g: idata[g].copy(deep=False) for g in idata.groups()})


def make_idata(**groups: Any) -> Any:
    """An ArviZ InferenceData from xarray datasets (``posterior=...``, ``sample_stats=...``)."""
    return az.InferenceData(**groups)


def summarize(idata: Any, var_names: list[str] | None = None, *, jit: bool = True) -> pd.DataFrame:
    """ArviZ summary of the posterior plus equal-tailed quantities.

    Columns: ``mean, sd, hdi_2.5%, hdi_97.5%, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat``
    (ArviZ, 95% HDI), then ``median, eti_2.5%, eti_97.5%`` and, for hazard-ratio rows
    (``hr[...]``), ``prob_gt_1`` = P(HR > 1). One row per scalar element (``name[coord]``).
    ``jit=False``: ArviZ's NumPy code instead of its numba-compiled functions (same numbers to
    ~1e-12; for one small posterior in a fresh process, compiling them costs more than it saves).
    """
    post = idata.posterior
    names = var_names or list(post.data_vars)
    # quiet: R-hat and ESS of a constant (S(0) = 1, an effect fixed at 0) divide 0 by 0: NaN
    with quiet(), _numba(jit):
        summary = az.summary(idata, var_names=names, kind="all", hdi_prob=HDI_PROB, round_to="none")
    flat = _flatten(post[names])
    summary["median"] = [float(np.median(flat[r])) for r in summary.index]
    summary["eti_2.5%"] = [float(np.quantile(flat[r], 0.025)) for r in summary.index]
    summary["eti_97.5%"] = [float(np.quantile(flat[r], 0.975)) for r in summary.index]
    summary["prob_gt_1"] = [
        float(np.mean(flat[r] > 1.0)) if r.startswith("hr[") else np.nan for r in summary.index
    ]
    summary.index.name = "parameter"
    return summary


@contextlib.contextmanager
def _numba(enabled: bool) -> Iterator[None]:
    before = az.Numba.numba_flag
    if not enabled:
        az.Numba.disable_numba()
    try:
        yield
    finally:
        az.Numba.numba_flag = before


def _flatten(post: Any) -> dict[str, np.ndarray]:
    """Map ArviZ summary row labels to their draws (chain and draw pooled)."""
    out: dict[str, np.ndarray] = {}
    for name, da in post.data_vars.items():
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        values = da.transpose("chain", "draw", *extra).values
        values = values.reshape(-1, *values.shape[2:])
        if not extra:
            out[name] = values
            continue
        coords = [da.coords[d].values for d in extra]
        for idx in np.ndindex(*values.shape[1:]):
            label = ", ".join(str(c[i]) for c, i in zip(coords, idx, strict=True))
            out[f"{name}[{label}]"] = values[(slice(None), *idx)]
    return out


def convergence(post: Any) -> dict[str, Any]:
    """R-hat (rank-normalised), bulk and tail ESS and sd of every element of a posterior
    dataset (dims ``chain``, ``draw`` and any others, e.g. a ``fit`` or ``reconstruction`` dim:
    each element is a quantity of its own). Returns datasets keyed ``rhat``, ``ess_bulk``,
    ``ess_tail``, ``sd`` with the non-sample dims.

    The values are ArviZ's (``az.rhat(method="rank")``, ``az.ess(method="bulk"/"tail")``,
    Vehtari et al. 2021), computed by :func:`rank_diagnostics` for all elements at once: ArviZ
    loops over the elements in Python, about 8 s for a batch of 16 competing-risk fits
    (2,300 elements), against well under a second here. Tested equal to ArviZ.
    """
    out: dict[str, Any] = {k: {} for k in ("rhat", "ess_bulk", "ess_tail")}
    for name, da in post.data_vars.items():
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        values = da.transpose("chain", "draw", *extra).values.astype(float)
        flat = values.reshape(values.shape[0], values.shape[1], -1)
        diag = rank_diagnostics(flat)
        coords = {d: da.coords[d] for d in extra if d in da.coords}
        for key, v in diag.items():
            out[key][name] = xr.DataArray(v.reshape(values.shape[2:]), dims=extra, coords=coords)
    result = {k: xr.Dataset(v) for k, v in out.items()}
    result["sd"] = post.std(dim=("chain", "draw"))
    return result


def rank_diagnostics(values: np.ndarray) -> dict[str, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of every column of ``values``
    (chain, draw, element), with ArviZ's definitions (``arviz.stats.diagnostics``: ``_rhat_rank``,
    ``_ess_bulk``, ``_ess_tail``), vectorised over the elements."""
    x = np.moveaxis(np.asarray(values, float), 2, 0)  # (element, chain, draw)
    split = _split_chains(x)
    folded = np.abs(split - np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None])
    rhat = np.maximum(_rhat(_z_scale(split)), _rhat(_z_scale(folded)))
    bulk = _ess(_z_scale(split))
    flat = x.reshape(x.shape[0], -1)
    tails = []
    for prob in (0.05, 0.95):
        q = np.quantile(flat, prob, axis=1)  # type 7, as ArviZ's mquantiles(1, 1)
        tails.append(_ess(_split_chains((x <= q[:, None, None]).astype(float))))
    return {"rhat": rhat, "ess_bulk": bulk, "ess_tail": np.minimum(*tails)}


def _split_chains(x: np.ndarray) -> np.ndarray:
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, -half:]], axis=1)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks (average ranks for ties, Blom's offset 3/8) per element.

    Without ties an element's ranks are a permutation of 1..N, so its scores are a lookup in
    one table of N normal quantiles; elements with ties get scipy's average ranks."""
    from scipy import stats

    flat = x.reshape(x.shape[0], -1)
    n_el, size = flat.shape
    order = np.argsort(flat, axis=1)
    ordered = np.take_along_axis(flat, order, axis=1)
    table = stats.norm.ppf((np.arange(1, size + 1) - 3 / 8) / (size + 1 / 4))
    z = np.empty_like(flat)
    np.put_along_axis(z, order, np.broadcast_to(table, (n_el, size)), axis=1)
    ties = (np.diff(ordered, axis=1) == 0).any(axis=1)
    if ties.any():
        ranks = stats.rankdata(flat[ties], method="average", axis=1)
        z[ties] = stats.norm.ppf((ranks - 3 / 8) / (size + 1 / 4))
    return z.reshape(x.shape)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[2]
    between = n * np.var(x.mean(axis=2), axis=1, ddof=1)
    within = np.mean(np.var(x, axis=2, ddof=1), axis=1)
    return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each element of ``x`` (element, chain, draw): ArviZ's ``_ess`` (autocovariance by
    FFT, Geyer's initial positive then monotone sequence), vectorised."""
    from scipy.fft import next_fast_len

    n_el, m, n = x.shape
    centred = x - x.mean(axis=2, keepdims=True)
    size = next_fast_len(2 * n)
    f = np.fft.rfft(centred, n=size, axis=2)
    acov = np.fft.irfft(f * np.conjugate(f), n=size, axis=2)[:, :, :n] / n
    mean_var = acov[:, :, 0].mean(axis=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + np.var(x.mean(axis=2), axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    # pairs (2j, 2j + 1); ArviZ computes pairs 1..j_max while the previous pair sum is > 0
    n_pairs = len(range(1, n - 3, 2)) + 1
    pairs = rho[:, : 2 * n_pairs].reshape(n_el, n_pairs, 2)
    sums = pairs.sum(axis=2)
    stop = sums[:, 1:] <= 0
    last = np.where(stop.any(axis=1), stop.argmax(axis=1) + 1, n_pairs - 1)  # j*
    index = np.arange(n_pairs)[None, :]
    kept = np.where(index < last[:, None], np.minimum.accumulate(sums, axis=1), 0.0)
    even = pairs[np.arange(n_el), last, 0]
    assigned = sums[np.arange(n_el), last] >= 0
    extra = np.where((even > 0) | assigned, even, 0.0)
    tau = -1.0 + 2.0 * kept.sum(axis=1) + extra
    tau = np.maximum(tau, 1.0 / np.log10(m * n))
    ess = m * n / tau
    ess = np.where(np.isnan(rho).any(axis=1), np.nan, ess)
    constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    return np.where(constant, float(m * n), ess)


def ess_of(draws: np.ndarray) -> tuple[float, float]:
    """Bulk and tail ESS of one quantity's draws, an array (chain, draw) (ArviZ)."""
    values = np.asarray(draws, float)
    return float(az.ess(values, method="bulk")), float(az.ess(values, method="tail"))


def rhat_of(draws: np.ndarray) -> float:
    """Rank-normalised split R-hat of one quantity's draws, an array (chain, draw) (ArviZ)."""
    return float(az.rhat(np.asarray(draws, float), method="rank"))


def bar_from_convergence(conv: dict[str, Any], n_divergences: int) -> dict[str, Any]:
    """The bar of one fit from :func:`convergence` arrays restricted to its own quantities.

    Same rule as :func:`passes_bar`: quantities constant over the draws are exempt; every other
    one needs R-hat <= 1.01 and bulk and tail ESS >= 400; no divergence. Returns ``ok``,
    ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ``failing`` (labels).
    """
    rhats, bulks, tails, failing = [], [], [], []
    for name in conv["rhat"].data_vars:
        varying = np.asarray(conv["sd"][name]) > 0
        r = np.asarray(conv["rhat"][name])[varying]
        b = np.asarray(conv["ess_bulk"][name])[varying]
        t = np.asarray(conv["ess_tail"][name])[varying]
        if r.size == 0:
            continue
        rhats.append(np.max(r))
        bulks.append(np.min(b))
        tails.append(np.min(t))
        bad = ~((r <= RHAT_MAX) & (b >= ESS_MIN) & (t >= ESS_MIN))
        if bad.any():
            failing.append(f"{name} ({int(bad.sum())} of {r.size})")
    details = {
        "max_rhat": float(max(rhats)) if rhats else float("nan"),
        "min_ess_bulk": float(min(bulks)) if bulks else float("nan"),
        "min_ess_tail": float(min(tails)) if tails else float("nan"),
        "divergences": int(n_divergences),
        "failing": failing,
    }
    details["ok"] = not failing and n_divergences == 0
    return details


def divergences(idata: Any) -> int:
    """Number of divergent transitions after tuning."""
    return int(idata.sample_stats["diverging"].sum())


def treedepth_saturation(idata: Any) -> float:
    """Share of draws whose tree hit the maximum depth."""
    stats = idata.sample_stats
    for name in ("maxdepth_reached", "reached_max_treedepth"):
        if name in stats:
            return float(stats[name].mean())
    return float("nan")


def bfmi(idata: Any) -> np.ndarray:
    """Bayesian fraction of missing information per chain."""
    with quiet():
        return np.asarray(az.bfmi(idata))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence ArviZ's and NumPy's RuntimeWarnings (0/0 on constant quantities, few draws):
    what they warn about is in the numbers (NaN R-hat, low ESS), which the bar reports."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def passes_bar(idata: Any, summary: pd.DataFrame | None = None) -> tuple[bool, dict[str, Any]]:
    """Whether ``idata`` meets the bar; details for the report.

    Returns
    -------
    (ok, details)
        ``details``: ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``,
        ``min_bfmi``, ``treedepth_saturation``, ``failing`` (row labels that miss R-hat or ESS).
        Quantities that are constant over all draws (no variance) are exempt from R-hat/ESS.
    """
    s = summarize(idata) if summary is None else summary
    varying = s["sd"] > 0
    v = s.loc[varying]
    bad_rhat = ~(v["r_hat"] <= RHAT_MAX)
    bad_bulk = ~(v["ess_bulk"] >= ESS_MIN)
    bad_tail = ~(v["ess_tail"] >= ESS_MIN)
    failing = list(v.index[bad_rhat | bad_bulk | bad_tail])
    n_div = divergences(idata)
    details = {
        "max_rhat": float(v["r_hat"].max()) if len(v) else float("nan"),
        "min_ess_bulk": float(v["ess_bulk"].min()) if len(v) else float("nan"),
        "min_ess_tail": float(v["ess_tail"].min()) if len(v) else float("nan"),
        "divergences": n_div,
        "min_bfmi": float(np.min(bfmi(idata))),
        "treedepth_saturation": treedepth_saturation(idata),
        "failing": failing,
    }
    return (not failing and n_div == 0), details


# --------------------------------------------------------------------------- plots


def _key_vars(idata: Any, max_panels: int | None = None) -> list[str]:
    """Key parameters present (also with a prefix, e.g. the multi-state model's ``start_rw_sigma``;
    its free effects ``beta_free`` in place of ``beta``, whose fixed zeros have no rank); with
    ``max_panels``, the first ones whose elements fit."""
    names, used = [], 0
    post = idata.posterior
    present = [
        n
        for v in ("beta_free" if "beta_free" in post else "beta", *KEY_VARS[1:])
        for n in post.data_vars
        if n == v or n.endswith(f"_{v}")
    ]
    for v in present:
        size = int(
            np.prod([n for d, n in idata.posterior[v].sizes.items() if d not in ("chain", "draw")])
        )
        if max_panels is not None and used + size > max_panels:
            continue
        names.append(v)
        used += size
    return names or [next(n for n in post.data_vars if n.endswith("log_h0"))]


def plot_trace(idata: Any, path: Path) -> Path:
    """Trace plot (draws per chain, and the pooled density) of the key parameters."""
    import matplotlib.pyplot as plt

    axes = az.plot_trace(
        idata, var_names=_key_vars(idata), compact=True, combined=True, figsize=(9, 7)
    )
    return _save(axes.ravel()[0].figure, path, plt)


def plot_rank(idata: Any, path: Path) -> Path:
    """Rank plots (histograms of pooled ranks per chain) of up to 8 key scalars."""
    import matplotlib.pyplot as plt

    axes = az.plot_rank(idata, var_names=_key_vars(idata, MAX_RANK_PANELS), kind="bars")
    return _save(np.ravel(axes)[0].figure, path, plt)


def plot_energy(idata: Any, path: Path) -> Path:
    """Energy plot (marginal energy vs energy transition distributions)."""
    import matplotlib.pyplot as plt

    ax = az.plot_energy(idata, figsize=(5, 3.5))
    return _save(ax.figure, path, plt)


def plot_prior_survival(idata: Any, path: Path) -> Path:
    """Prior predictive survival curves (median and 90% band) with the prior median survival."""
    import matplotlib.pyplot as plt

    prior = idata.prior
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = []
    if "survival" in prior:
        curves.append(("survival", prior["survival"].isel(pattern=0)))
    if "recurrence_free_survival" in prior:
        curves.append(("recurrence-free survival", prior["recurrence_free_survival"]))
    for label, s in curves:
        t = s["time"].values
        q = np.quantile(s.values.reshape(-1, t.size), [0.05, 0.5, 0.95], axis=0)
        ax.fill_between(t, q[0], q[2], alpha=0.3, label=f"prior 90% band of {label}")
        ax.plot(t, q[1], label=f"prior median of {label}")
        ax.set_ylabel("probability")
    ax.set_xlabel(str(idata.posterior.attrs.get("time_unit", "months")))
    ax.set_ylim(0, 1)
    ax.set_title(f"Prior predictive: {idata.posterior.attrs.get('model_name', '')}")
    ax.legend()
    return _save(fig, path, plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- vlms diagnose


def saved_summary(nc_path: Path) -> pd.DataFrame | None:
    """The ``<name>.summary.csv`` written by ``vlms fit`` beside ``nc_path``, if not older."""
    csv = nc_path.with_suffix(".summary.csv")
    if csv.exists() and csv.stat().st_mtime >= nc_path.stat().st_mtime:
        return pd.read_csv(csv, index_col=0)
    return None


def diagnose_fit(path: Path, figs: Path) -> dict[str, Any]:
    """Bar check and figures of one saved fit (the summary is the saved one when current)."""
    import matplotlib

    matplotlib.use("Agg")
    name = path.stem
    idata = load_fit(path)
    ok, d = passes_bar(idata, saved_summary(path))
    d["draws"] = int(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])
    with quiet():
        plot_trace(idata, figs / f"trace_{name}.png")
        plot_rank(idata, figs / f"rank_{name}.png")
        plot_energy(idata, figs / f"energy_{name}.png")
        if "prior" in idata.groups():
            plot_prior_survival(idata, figs / f"prior_survival_{name}.png")
    return {"name": name, "ok": ok, **d, "prior": prior_check(idata)}


def prior_check(idata: Any) -> dict[str, float]:
    """Prior predictive summaries: is the prior's survival plausible for this disease?

    ``p_median_lt_6``: prior P(median survival < 6 months); ``p_median_gt_cap``: prior P(median
    beyond the cap, 10 years); ``s60_q05/q50/q95``: prior quantiles of S(60 months) (survival,
    or recurrence-free survival for competing-risk fits).
    """
    if "prior" not in idata.groups():
        return {}
    prior = idata.prior
    out: dict[str, float] = {}
    if "median_survival_capped" in prior:
        med = prior["median_survival_capped"].isel(pattern=0).values.ravel()
        cap = float(idata.posterior.attrs.get("median_cap_months", np.max(med)))
        out["p_median_lt_6"] = float(np.mean(med < 6.0))
        out["p_median_gt_cap"] = float(np.mean(med >= cap))
    curve = None
    if "survival" in prior:
        curve = prior["survival"].isel(pattern=0)
    elif "recurrence_free_survival" in prior:
        curve = prior["recurrence_free_survival"]
    if curve is not None and 60.0 in curve["time"].values:
        s60 = curve.sel(time=60.0).values.ravel()
        for q in (0.05, 0.5, 0.95):
            out[f"s60_q{round(q * 100):02d}"] = float(np.quantile(s60, q))
    return out


def diagnose_dir(out_dir: Path, workers: int = 2) -> tuple[bool, str]:
    """Diagnose every ``<out_dir>/fits/*.nc``; write figures; return (all pass, markdown).

    Fits are checked in up to ``workers`` processes side by side.
    """
    fits = sorted((Path(out_dir) / "fits").glob("*.nc"))
    results = fork_starmap(diagnose_fit, [(p, Path(out_dir) / "figures") for p in fits], workers)
    lines = bar_table(results)
    members_ok, member_lines = ensemble_lines(Path(out_dir))
    lines += member_lines
    lines += _prior_lines(results) + _timing_lines(Path(out_dir) / "fits" / "fit_log.csv")
    lines += [
        "",
        "Figures: `figures/trace_<model>.png`, `figures/rank_<model>.png`, "
        "`figures/energy_<model>.png`, `figures/prior_survival_<model>.png`.",
        "",
    ]
    all_ok = bool(results) and all(r["ok"] for r in results) and members_ok
    return all_ok, "\n".join(lines)


def diagnose_one(path: Path, out_dir: Path) -> tuple[bool, str]:
    """Diagnose one saved fit (a registry fit or ``vlms fit --data ... --out FILE.nc``): the
    bar, and trace, rank, energy and prior predictive plots in ``<out_dir>/figures/``."""
    check_fit_file(Path(path))
    result = diagnose_fit(Path(path), Path(out_dir) / "figures")
    name = result["name"]
    lines = bar_table([result])
    lines += [
        "",
        f"Figures: `figures/trace_{name}.png`, `figures/rank_{name}.png`, "
        f"`figures/energy_{name}.png`, `figures/prior_survival_{name}.png`.",
        "",
    ]
    return bool(result["ok"]), "\n".join(lines)


def check_fit_file(path: Path) -> None:
    """Raise ``VlmsInputError`` unless ``path`` is a saved fit (posterior and sampler stats)."""
    if not path.is_file():
        raise VlmsInputError("file not found", file=str(path))
    try:
        idata = load_fit(path)
        ok = {"posterior", "sample_stats"} <= set(idata.groups())
    except Exception:  # h5netcdf/xarray raise many types on a file that is not NetCDF
        ok = False
    if not ok:
        raise VlmsInputError(
            "not a saved fit (expected the NetCDF written by vlms fit --out)", file=str(path)
        )


def bar_table(results: list[dict[str, Any]]) -> list[str]:
    """The markdown table of the bar, one row per diagnosed fit, and notes on misses."""
    lines = [
        "# Sampling diagnostics",
        "",
        f"Bar: R-hat <= {RHAT_MAX}, bulk and tail ESS >= {ESS_MIN:.0f} on every posterior "
        "variable (derived ones included), zero divergences. BFMI < 0.3 and tree-depth "
        "saturation are flagged but do not fail the bar.",
        "",
        "| model | draws | max R-hat | min bulk ESS | min tail ESS | divergences | min BFMI "
        "| tree-depth saturation | bar |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for d in results:
        name, ok = d["name"], d["ok"]
        lines.append(
            f"| {name} | {d['draws']} | {d['max_rhat']:.4f} | {d['min_ess_bulk']:.0f} | "
            f"{d['min_ess_tail']:.0f} | {d['divergences']} | {d['min_bfmi']:.2f} | "
            f"{d['treedepth_saturation']:.3f} | {'met' if ok else 'MISSED'} |"
        )
        if d["failing"]:
            shown = ", ".join(d["failing"][:10])
            more = len(d["failing"]) - 10
            extra = f" and {more} more" if more > 0 else ""
            notes.append(f"- {name}: misses R-hat/ESS on {shown}{extra}")
        if d["min_bfmi"] < BFMI_MIN:
            notes.append(f"- {name}: low BFMI ({d['min_bfmi']:.2f})")
    if not results:
        lines.append("| (no fits found) | | | | | | | | MISSED |")
    return lines + (["", *notes] if notes else [])


def member_bars(nc_path: Path) -> pd.DataFrame:
    """The bar of every member of a saved ensemble fit (``fits/ensemble/<name>.nc``): the
    ``<name>.members.csv`` written with it when not older, else recomputed from its draws."""
    csv = nc_path.with_suffix(".members.csv")
    if csv.exists() and csv.stat().st_mtime >= nc_path.stat().st_mtime:
        return pd.read_csv(csv)
    idata = load_fit(nc_path)
    post = idata.posterior
    conv = convergence(post)
    diverging = idata.sample_stats["diverging"].sum(dim=("chain", "draw"))
    rows = []
    for r in post["reconstruction"].values:
        one = {k: v.sel(reconstruction=r) for k, v in conv.items()}
        bar = bar_from_convergence(one, int(diverging.sel(reconstruction=r)))
        rows.append(
            {
                "reconstruction": int(r),
                **{k: bar[k] for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences")},
                "bar_met": bar["ok"],
                "failing": "; ".join(bar["failing"]),
            }
        )
    return pd.DataFrame(rows)


def ensemble_worst(out_dir: Path) -> list[dict[str, Any]]:
    """Per model with saved ensemble fits: members, how many meet the bar, and the worst
    R-hat, bulk and tail ESS over the members with the member that has it."""
    out = []
    for path in sorted((Path(out_dir) / "fits" / "ensemble").glob("*.nc")):
        t = member_bars(path)
        row: dict[str, Any] = {
            "model": path.stem,
            "members": len(t),
            "meeting_bar": int(t["bar_met"].astype(bool).sum()),
            "divergences": int(t["divergences"].sum()),
            "refitted": int((t["attempt"] > 1).sum()) if "attempt" in t else 0,
        }
        for col, pick in (
            ("max_rhat", "idxmax"),
            ("min_ess_bulk", "idxmin"),
            ("min_ess_tail", "idxmin"),
        ):
            worst = t.loc[getattr(t[col], pick)()]
            row[col] = float(worst[col])
            row[f"{col}_member"] = int(worst["reconstruction"])
        out.append(row)
    return out


def ensemble_lines(out_dir: Path) -> tuple[bool, list[str]]:
    """Markdown of the worst member per model of the reconstruction ensemble, and whether every
    member of every model meets the bar (True when there is no ensemble)."""
    rows = ensemble_worst(out_dir)
    if not rows:
        return True, []
    lines = [
        "",
        "## Reconstruction ensemble: the worst member of each model",
        "",
        "Every member (one reconstructed cohort) is a fit of its own and must meet the bar on "
        "every parameter; per model, the worst value over the members and which member it is "
        "(`fits/ensemble/<model>.members.csv` has every member; 'refitted': members that met the "
        "bar only on a later attempt with more draws). Imputed and multi-state fits are fitted "
        "on the chosen cohort only and have no members.",
        "",
        "| model | members | meeting the bar | max R-hat (member) | min bulk ESS (member) | "
        "min tail ESS (member) | divergences | refitted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['members']} | {r['meeting_bar']} | {r['max_rhat']:.4f} "
            f"({r['max_rhat_member']}) | {r['min_ess_bulk']:.0f} ({r['min_ess_bulk_member']}) | "
            f"{r['min_ess_tail']:.0f} ({r['min_ess_tail_member']}) | {r['divergences']} | "
            f"{r['refitted']} |"
        )
    return all(r["meeting_bar"] == r["members"] for r in rows), lines


def _prior_lines(results: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in results if r.get("prior")]
    if not rows:
        return []

    def f(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}"

    lines = [
        "",
        "## Prior predictive check",
        "",
        "Survival implied by the priors alone (first covariate pattern; competing-risk fits: "
        "recurrence-free survival). A plausible prior for this disease puts the median survival "
        "between months and decades: rarely under 6 months, often beyond 10 years.",
        "",
        "| model | P(median < 6 mo) | P(median > 10 y) | S(60 mo) 5% | 50% | 95% |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["prior"]
        lines.append(
            f"| {r['name']} | {f(p.get('p_median_lt_6'))} | {f(p.get('p_median_gt_cap'))} | "
            f"{f(p.get('s60_q05'))} | {f(p.get('s60_q50'))} | {f(p.get('s60_q95'))} |"
        )
    return lines


def _timing_lines(log_csv: Path) -> list[str]:
    if not log_csv.exists():
        return []
    log = pd.read_csv(log_csv)
    lines = [
        "",
        "## Compile and sampling time (from `fits/fit_log.csv`)",
        "",
        "| model | structure | compile s | sampling s | min bulk ESS per sampling second |",
        "|---|---|---|---|---|",
    ]
    for _, r in log.iterrows():
        lines.append(
            f"| {r['name']} | {r['structure']} | {r['compile_seconds']:.1f} | "
            f"{r['sampling_seconds']:.2f} | {r['ess_per_second']:.0f} |"
        )
    return lines


def run_cli(args: argparse.Namespace) -> int:
    """``vlms diagnose [--strict]``: write ``<out-dir>/diagnostics.md`` and figures; with
    ``--fit FILE.nc``, ``<out-dir>/<name>.diagnostics.md`` and that fit's figures (out-dir: the
    fit's folder unless given)."""
    fit = getattr(args, "fit", None)
    if fit is not None:
        out_dir = Path(args.out_dir) if args.out_dir is not None else Path(fit).parent
        all_ok, text = diagnose_one(Path(fit), out_dir)
        write_text(out_dir / f"{Path(fit).stem}.diagnostics.md", text)
    else:
        out_dir = Path(args.out_dir) if args.out_dir is not None else Path("reports")
        all_ok, text = diagnose_dir(out_dir)
        write_text(out_dir / "diagnostics.md", text)
    print(text)
    if args.strict and not all_ok:
        return 1
    return 0


# --- used by compare/report ---
# PSIS-LOO for analysis/comparison/hazard_ratios.py (owned by the compare/report helper; keep ArviZ
# calls here).

PARETO_K_OK = 0.7
"""Pareto k above this: the PSIS estimate of that patient's LOO term is unreliable."""


def loo_compare(fits: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PSIS-LOO of each fit and their comparison (``az.loo``, ``az.compare``).

    Parameters
    ----------
    fits
        Label -> InferenceData with a ``log_likelihood`` group (one variable, dim ``patient``);
        every fit must cover the same patients in the same order.

    Returns
    -------
    (comparison, pareto)
        ``comparison``: ``az.compare`` (rank, elpd_loo, p_loo, elpd_diff, weight, se, dse,
        warning), best model first, log scale. ``pareto``: per model ``n``, ``elpd_loo``, ``se``,
        ``p_loo``, ``max_k``, ``n_k_over_0.7`` and ``n_k_over_1`` (patients whose Pareto k is
        above 0.7 or 1).
    """
    if len(fits) < 2:
        raise ValueError("need at least two fits to compare")
    sizes = {name: int(idata.log_likelihood.sizes["patient"]) for name, idata in fits.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"fits cover different numbers of patients: {sizes}")
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # high-k warnings are reported in the table instead
        for name, idata in fits.items():
            res = az.loo(idata, pointwise=True, scale="log")
            k = np.asarray(res.pareto_k)
            rows.append(
                {
                    "model": name,
                    "n": int(k.size),
                    "elpd_loo": float(res.elpd_loo),
                    "se": float(res.se),
                    "p_loo": float(res.p_loo),
                    "max_k": float(np.max(k)),
                    f"n_k_over_{PARETO_K_OK}": int(np.sum(k > PARETO_K_OK)),
                    "n_k_over_1": int(np.sum(k > 1.0)),
                }
            )
        comparison = az.compare(fits, ic="loo", scale="log")
    comparison.index.name = "model"
    return comparison, pd.DataFrame(rows).set_index("model")
