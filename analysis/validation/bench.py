"""``vlms bench``: timings measured in one run on this machine -> ``reports/bench.{md,json}``.

Every figure is the median over ``--repeats`` runs (the repeats are listed in the JSON):

* per registry model: nutpie's compile seconds (per model structure, compiled afresh each
  repeat), sampling seconds and ESS per second (smallest bulk ESS of the model's parameters
  divided by sampling seconds), and PyMC's default NUTS on the same model, data, seed and
  settings (``--pymc-models``: the Table 2 fits by default), with the ratio of ESS per second;
* scaling: the PEM with two binary covariates on simulated cohorts
  (``analysis.validation.simulate``) of
  ``--sizes`` patients, fitted on collapsed counts (one compiled model, data swapped) and on
  expanded person-period rows (up to ``--expanded-max`` patients), with time and peak memory;
  lifelines' Cox model on the same data (up to ``--cox-max`` patients) as a reference;
* ``vlms fit --data`` on a simulated 92-patient CSV with one binary covariate, in a new process:
  the first run with an empty compiled-model cache and ``--repeats`` runs with it filled, with
  the command's own step timings (imports, compile or cache load, sampling, ArviZ, writing);
* ``make fit``: wall time warm (this checkout and venv; ``--make-fit-repeats``), and cold (a
  fresh clone with a fresh venv) only with ``--cold``.

Peak memory is the increase of the process's resident-set high-water mark (``VmHWM``, reset
through ``/proc/self/clear_refs`` before each step) over the resident set at the start of it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.atomic import write_json, write_text
from analysis.core.errors import VlmsInputError
from analysis.core.parallel import run_command
from analysis.inference.engine import compile_nutpie

SIZES = (1_000, 10_000, 100_000, 1_000_000)
EXPANDED_MAX = 10_000
COX_MAX = 1_000_000
TABLE2 = ("dss_beta_catenin", "dss_igf1r", "rfs_beta_catenin", "rfs_igf1r")
PACKAGES = ("pymc", "pytensor", "nutpie", "numba", "arviz", "numpy", "lifelines", "dask")
PARAMETERS = ("beta", "log_h0", "rw_sigma", "cause_rw_sigma", "effect_rho")
"""Model parameters whose smallest bulk ESS defines ESS per second."""


# --------------------------------------------------------------------------- measuring


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Measured:
    """Result of :func:`measure`: the value returned, seconds, and peak extra memory (MB)."""

    value: Any
    seconds: float
    peak_mb: float | None
    peak_rss_mb: float | None = None


def measure(fn: Callable[[], Any]) -> Measured:
    """Run ``fn`` once: wall seconds, the rise of the resident-set high-water mark over the
    resident set at the start (a lower bound of the step's memory: memory the process already
    holds and reuses is not counted), and the high-water mark itself (process total)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        start_kb = _status_kb("VmRSS")
    except OSError:
        start_kb = None
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    peak_kb = _status_kb("VmHWM")
    peak = None if start_kb is None or peak_kb is None else max(peak_kb - start_kb, 0) / 1024
    return Measured(value, seconds, peak, None if peak_kb is None else peak_kb / 1024)


def median(values: list[float]) -> float:
    clean = [v for v in values if v is not None]
    return float(np.median(clean)) if clean else float("nan")


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory, OS and package versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = version(p)
        except Exception:
            versions[p] = "not installed"
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024**2, 1) if mem_kb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def min_bulk_ess(idata: Any) -> float:
    """Smallest bulk ESS over the model parameters present in the posterior."""
    from analysis.inference import diagnostics as diagnostics

    names = [v for v in PARAMETERS if v in idata.posterior]
    summary = diagnostics.summarize(idata, var_names=names)
    return float(summary["ess_bulk"].min())


# --------------------------------------------------------------------------- per model


def bench_models(
    df: Any, repeats: int, seed: int, pymc_models: set[str], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Compile, sampling and ESS/s per registry model, nutpie and PyMC's default NUTS."""
    from analysis.inference.engine import SamplerSettings, compile_structure, fit_model
    from analysis.inference.registry import REGISTRY
    from analysis.inference.spec_data import spec_data

    rows = []
    compiled_cache: dict[tuple, list[Any]] = {}
    for spec in REGISTRY:
        data = spec_data(spec, df)
        key = (spec.builder, data.n_slots, len(data.cuts), data.n_causes, spec.priors)
        if key not in compiled_cache:
            log(f"  compiling the {spec.builder} structure ({data.n_slots} slots) x{repeats}")
            compiled_cache[key] = [
                compile_structure(spec.builder, data, spec.priors, "nutpie", use_cache=False)
                for _ in range(repeats)
            ]
        compiled = compiled_cache[key]
        row: dict[str, Any] = {
            "model": spec.name,
            "n": data.n,
            "events": int(np.sum(data.event > 0)),
            "structure": f"{spec.builder}/{data.n_slots} slots",
            "nutpie_compile_s": [c.compile_seconds for c in compiled],
        }
        for sampler in ("nutpie", "pymc"):
            if sampler == "pymc" and spec.name not in pymc_models:
                continue
            settings = SamplerSettings(sampler=sampler, seed=seed)
            secs, ess = [], []
            for r in range(repeats):
                result, _ = fit_model(
                    data,
                    kind=spec.builder,
                    priors=spec.priors,
                    settings=settings,
                    compiled=compiled[r] if sampler == "nutpie" else None,
                )
                secs.append(result.sampling_seconds)
                ess.append(min_bulk_ess(result.idata))
            row[f"{sampler}_sampling_s"] = secs
            row[f"{sampler}_min_ess_bulk"] = ess
            row[f"{sampler}_ess_per_s"] = [e / s for e, s in zip(ess, secs, strict=True)]
        summary = _model_medians(row)
        rows.append({**row, **summary})
        log(
            f"  {spec.name}: nutpie compile {summary['nutpie_compile_s_median']:.1f} s, sampling "
            f"{summary['nutpie_sampling_s_median']:.2f} s, "
            f"{summary['nutpie_ess_per_s_median']:.0f} ESS/s"
            + (
                f"; pymc {summary['pymc_sampling_s_median']:.1f} s, "
                f"{summary['pymc_ess_per_s_median']:.0f} ESS/s, ratio {summary['ratio']:.1f}"
                if "pymc_sampling_s" in row
                else ""
            )
        )
    return rows


def _model_medians(row: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key in list(row):
        if isinstance(row[key], list):
            out[f"{key}_median"] = median(row[key])
    if "pymc_ess_per_s_median" in out:
        out["ratio"] = out["nutpie_ess_per_s_median"] / out["pymc_ess_per_s_median"]
    return out


# --------------------------------------------------------------------------- scaling


def bench_scaling(
    sizes: list[int],
    repeats: int,
    seed: int,
    expanded_max: int,
    cox_max: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Collapsed vs expanded PEM and lifelines' Cox on simulated cohorts of each size."""
    import nutpie

    from analysis.inference.engine import SamplerSettings
    from models.priors import Priors
    from models.survival_data import DEFAULT_CUTS

    cuts = np.asarray(DEFAULT_CUTS)
    settings = SamplerSettings(seed=seed)
    priors = Priors()
    rows: list[dict[str, Any]] = []
    compiled = None
    for n in sizes:
        row, compiled = _scale_one(n, seed, cuts, priors, settings, compiled, repeats, nutpie)
        cohort = row.pop("_cohort")
        log(f"  n={n}: collapsed sampling {row['collapsed_sampling_s_median']:.2f} s")
        if n <= expanded_max:
            row.update(_expanded_runs(nutpie, cohort, cuts, priors, settings, repeats))
            log(f"  n={n}: expanded sampling {row['expanded_sampling_s_median']:.1f} s")
        else:
            row["expanded_skipped"] = f"n > --expanded-max {expanded_max}"
        if n <= cox_max:
            cox = [measure(partial(_cox, cohort)) for _ in range(repeats)]
            row["cox_s"] = [c.seconds for c in cox]
            row["cox_s_median"] = median(row["cox_s"])
            row["cox_peak_mb_median"] = median([c.peak_mb for c in cox])
            row["cox_peak_rss_mb_median"] = median([c.peak_rss_mb for c in cox])
            row["cox_log_hr"] = cox[0].value
            log(f"  n={n}: lifelines Cox {row['cox_s_median']:.1f} s")
        else:
            row["cox_skipped"] = f"n > --cox-max {cox_max}"
        rows.append(row)
    return rows


def _scale_one(
    n: int,
    seed: int,
    cuts: np.ndarray,
    priors: Any,
    settings: Any,
    compiled: Any,
    repeats: int,
    nutpie: Any,
) -> tuple[dict[str, Any], Any]:
    """Simulate ``n`` patients, collapse, and sample the collapsed PEM ``repeats`` times."""
    from analysis.inference.engine import compile_structure
    from analysis.validation.simulate import large_pem_cohort

    cohort = large_pem_cohort(n, seed, cuts)
    covs = {"x1": cohort.x[:, 0], "x2": cohort.x[:, 1]}
    row: dict[str, Any] = {"n": n, "events": int(cohort.event.sum()), "_cohort": cohort}
    prep = measure(partial(_collapsed, cohort, covs, cuts))
    data, values = prep.value
    row["collapsed_prepare_s"] = prep.seconds
    row["collapsed_prepare_peak_mb"] = prep.peak_mb
    row["collapsed_prepare_peak_rss_mb"] = prep.peak_rss_mb
    if compiled is None:
        c = measure(partial(compile_structure, "pem", data, priors, "nutpie", use_cache=False))
        compiled = c.value
        row["collapsed_compile_s"] = c.seconds
    model = compiled.nutpie_model.with_data(**values)
    runs = [measure(partial(_nutpie, nutpie, model, settings)) for _ in range(repeats)]
    row["collapsed_sampling_s"] = [r.seconds for r in runs]
    row["collapsed_sampling_s_median"] = median(row["collapsed_sampling_s"])
    row["collapsed_sampling_peak_mb_median"] = median([r.peak_mb for r in runs])
    row["collapsed_sampling_peak_rss_mb_median"] = median([r.peak_rss_mb for r in runs])
    row["collapsed_min_ess_bulk_median"] = median([min_bulk_ess(r.value) for r in runs])
    post = runs[0].value.posterior
    row["collapsed_posterior_mean_beta"] = [
        float(v) for v in post["beta"].mean(("chain", "draw")).values
    ]
    return row, compiled


def _expanded_runs(
    nutpie: Any, cohort: Any, cuts: np.ndarray, priors: Any, settings: Any, repeats: int
) -> dict[str, Any]:
    """The expanded-rows PEM: compiled once, sampled ``repeats`` times."""
    first = measure(partial(_expanded, nutpie, cohort, cuts, priors, settings))
    runs = [first]
    runs += [
        measure(partial(_expanded, nutpie, cohort, cuts, priors, settings, first))
        for _ in range(repeats - 1)
    ]
    sampling = [r.value["sampling_s"] for r in runs]
    return {
        "expanded_rows": first.value["rows"],
        "expanded_compile_s": first.value["compile_s"],
        "expanded_sampling_s": sampling,
        "expanded_sampling_s_median": median(sampling),
        "expanded_peak_mb_median": median([r.peak_mb for r in runs]),
        "expanded_peak_rss_mb_median": median([r.peak_rss_mb for r in runs]),
        "expanded_min_ess_bulk_median": median([r.value["ess"] for r in runs]),
    }


def _collapsed(cohort: Any, covs: dict[str, np.ndarray], cuts: np.ndarray) -> tuple[Any, dict]:
    from analysis.inference.data import make_fit_data
    from analysis.inference.kinds import KINDS

    data = make_fit_data(cohort.time, cohort.event, covs, cuts=cuts, slots=2)
    return data, KINDS["pem"].data_dict(data)


def _nutpie(nutpie: Any, model: Any, settings: Any) -> Any:
    from analysis.inference.engine import nutpie_sample

    return nutpie_sample(model, settings)


def _expanded(
    nutpie: Any, cohort: Any, cuts: np.ndarray, priors: Any, settings: Any, first: Any = None
) -> dict[str, Any]:
    """PEM on person-period rows (compiled once per size; repeats reuse it)."""
    from models.pem import build_pem
    from models.survival_data import crude_rate, expand, rows_as_cells

    if first is None:
        pp = expand(cohort.time, cohort.event, cohort.x, cuts)
        cells = rows_as_cells(pp, len(cuts))
        model = build_pem(
            cells,
            cuts=cuts,
            covariate_names=["x1", "x2"],
            log_rate_center=float(np.log(crude_rate(cohort.time, cohort.event))),
            priors=priors,
        )
        t0 = time.perf_counter()
        compiled = compile_nutpie(model)
        compile_s = time.perf_counter() - t0
        rows = int(pp.exposure.size)
    else:
        compiled, compile_s = first.value["compiled"], first.value["compile_s"]
        rows = first.value["rows"]
    t0 = time.perf_counter()
    idata = _nutpie(nutpie, compiled, settings)
    sampling = time.perf_counter() - t0
    return {
        "compiled": compiled,
        "compile_s": compile_s,
        "rows": rows,
        "sampling_s": sampling,
        "ess": min_bulk_ess(idata),
    }


def _cox(cohort: Any) -> list[float]:
    import pandas as pd
    from lifelines import CoxPHFitter

    df = pd.DataFrame(
        {"t": cohort.time, "e": cohort.event, "x1": cohort.x[:, 0], "x2": cohort.x[:, 1]}
    )
    cph = CoxPHFitter().fit(df, duration_col="t", event_col="e")
    return [float(v) for v in cph.params_.values]


# --------------------------------------------------------------------------- one own-data fit

OWN_FIT_PATIENTS = 92
OWN_FIT_PHASES = ("imports", "read", "compile", "sampling", "posterior", "diagnostics", "write")
"""Steps timed by ``vlms fit --data`` itself (its JSON's ``timings``); the rest of the wall
time is Python's start-up and the ``vlms`` command line."""


def own_fit_csv(path: Path, seed: int) -> dict[str, int]:
    """A cohort like the issue's user: 92 patients, one binary covariate, about a third with the
    event (months), simulated with :mod:`analysis.validation.simulate`."""
    import pandas as pd

    from analysis.validation.simulate import binary_covariates, simulate_pem

    rng = np.random.default_rng(seed)
    x = binary_covariates(rng, OWN_FIT_PATIENTS, (0.45,))
    cohort = simulate_pem(rng, np.log([0.006, 0.004]), np.array([0.7]), x, np.array([0.0, 24.0]))
    frame = pd.DataFrame({"months": np.round(cohort.time, 2) + 0.01, "dss": cohort.event,
                          "marker": x[:, 0].astype(int)})  # fmt: skip
    frame.to_csv(path, index=False)
    return {"patients": OWN_FIT_PATIENTS, "events": int(cohort.event.sum())}


def bench_own_fit(root: Path, repeats: int, seed: int, log: Callable[[str], None]) -> dict:
    """Wall time of ``vlms fit --data`` in a new process on a 92-patient CSV: the first run with
    an empty compiled-model cache, then ``repeats`` runs with it filled."""
    with tempfile.TemporaryDirectory(prefix="vlms-own-fit-") as tmp:
        folder = Path(tmp)
        info = own_fit_csv(folder / "cohort.csv", seed)
        out = folder / "fit.json"
        cmd = [sys.executable, "-m", "analysis.cli", "fit", "--data", str(folder / "cohort.csv"),
               "--time", "months", "--event", "dss", "--covariates", "marker",
               "--seed", str(seed), "--json", str(out)]  # fmt: skip
        env = {**os.environ, "VLMS_CACHE_DIR": str(folder / "cache")}
        runs = []
        for i in range(1 + repeats):
            cpu0 = _children_cpu()
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            cpu = _children_cpu() - cpu0
            doc = json.loads(out.read_text()) if proc.returncode in (0, 3) else {}
            runs.append({
                "wall_s": wall,
                "cpu_s": cpu,
                "load_average_after": os.getloadavg()[0],
                "exit": proc.returncode,
                "timings": doc.get("timings", {}),
                "refits": len(doc.get("remedies", [None])) - 1,
                "failure_tail": _tail(proc.stderr) if proc.returncode not in (0, 3) else "",
            })  # fmt: skip
            log(f"  vlms fit --data ({'first' if i == 0 else 'cached'}) #{i + 1}: {wall:.1f} s "
                f"wall, {cpu:.1f} s CPU")  # fmt: skip
            out.unlink(missing_ok=True)
    later = runs[1:]
    return {
        **info,
        "command": "vlms fit --data cohort.csv --time months --event dss --covariates marker",
        "first": runs[0],
        "second": later,
        "second_wall_s_median": median([r["wall_s"] for r in later]),
    }


def _children_cpu() -> float:
    """User plus system CPU seconds of the finished child processes so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- make fit


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Environment variables set for what runs inside (child processes inherit them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


STAGES = ("audit", "fit", "diagnose", "compare", "report")
"""The ``vlms`` commands of ``make fit``, in order (diagnose and compare run side by side)."""


def bench_make_fit(root: Path, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Wall time of ``make fit`` in this checkout (warm: venv and caches in place), with each
    stage's wall and CPU seconds (from ``VLMS_STAGE_LOG``), the load average around the run and
    the number of reconstructions fitted."""
    times, codes, tails, stages, loads = [], [], [], [], []
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            stage_log = Path(tmp) / "stages.jsonl"
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            with _environ(VLMS_STAGE_LOG=str(stage_log)):
                proc = run_command(["make", "fit"], root)
            times.append(time.perf_counter() - t0)
            loads.append({"before": load_before, "after": os.getloadavg()[0]})
            stages.append(read_stage_log(stage_log))
        codes.append(proc.returncode)
        tails.append(_tail(proc.stdout + proc.stderr) if proc.returncode else "")
        log(f"  make fit (warm) #{i + 1}: {times[-1]:.1f} s, exit {proc.returncode}")
    return {
        "warm_s": times,
        "warm_s_median": median(times),
        "exit_codes": codes,
        "failure_tail": tails,
        "stages": stages,
        "load_average": loads,
        **ensemble_counts(root / "reports"),
    }


def read_stage_log(path: Path) -> list[dict[str, Any]]:
    """The JSON lines ``vlms`` commands append to ``VLMS_STAGE_LOG`` (empty if none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ensemble_counts(reports: Path) -> dict[str, Any]:
    """How many reconstructions and fits ``make fit`` sampled (from its batch and member logs)."""
    import pandas as pd

    out: dict[str, Any] = {"members": 0, "fits": 0, "batches": 0}
    members = sorted((reports / "fits" / "ensemble").glob("*.members.csv"))
    if members:
        out["members"] = len(pd.read_csv(members[0]))
    log_csv = reports / "fits" / "batch_log.csv"
    if log_csv.is_file():
        batches = pd.read_csv(log_csv)
        out["batches"] = len(batches)
        out["fits"] = int(batches.loc[batches["attempt"] == 1, "fits"].sum())
        out["refitted"] = int(batches.loc[batches["attempt"] > 1, "fits"].sum())
    return out


def _tail(text: str, n: int = 4) -> str:
    """The last lines of a failed run's output (which step failed), for the report."""
    lines = [line for line in text.splitlines() if line.strip() and "warn" not in line.lower()]
    return " | ".join(lines[-n:])[-600:]


def bench_cold(root: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """``make fit`` in a fresh clone with a fresh venv (creating the venv included)."""
    folder = Path(tempfile.mkdtemp(prefix="vlms-cold-"))
    try:
        subprocess.run(["git", "clone", "--quiet", str(root), str(folder / "repo")], check=True)
        # nothing compiled: an empty compiled-model cache and PyTensor compile directory
        env = {
            "VLMS_CACHE_DIR": str(folder / "vlms-cache"),
            "PYTENSORFLAGS": f"base_compiledir={folder / 'pytensor'}",
        }
        t0 = time.perf_counter()
        with _environ(**env):
            proc = run_command(["make", "fit"], folder / "repo")
        seconds = time.perf_counter() - t0
        log(f"  make fit (cold, fresh clone and venv): {seconds:.1f} s, exit {proc.returncode}")
        return {"cold_s": seconds, "exit_code": proc.returncode}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- report


def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:,.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    """The benchmark report."""
    m = doc["machine"]
    v = m["versions"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {doc['date']} in one run of `vlms bench` (seed {doc['seed']}); each figure is "
        f"the median of {doc['repeats']} repeats. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gb']} GB; load average at start {m['load_average_at_start']} (other work "
        f"on the machine slows every figure). Python {m['python']}, "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + ".",
        "",
    ]
    if doc.get("models"):
        lines += [
            "## Per model (registry models, 4 chains x 1000 draws after 1000 tuning)",
            "",
            "ESS/s: smallest bulk ESS over the model's parameters / sampling seconds. PyMC: its "
            "default NUTS (`pm.sample`), same model, data, seed, target_accept; its sampling "
            "seconds include PyMC's own function compilation (C backend, cached on disk).",
            "",
            "| model | n | events | nutpie compile s | nutpie sampling s | nutpie ESS/s "
            "| PyMC sampling s | PyMC ESS/s | nutpie / PyMC ESS/s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in doc["models"]:
            lines.append(
                f"| {r['model']} | {r['n']} | {r['events']} | {_f(r['nutpie_compile_s_median'], 1)}"
                f" | {_f(r['nutpie_sampling_s_median'])} | {_f(r['nutpie_ess_per_s_median'], 0)} "
                f"| {_f(r.get('pymc_sampling_s_median'))} | {_f(r.get('pymc_ess_per_s_median'), 0)}"
                f" | {_f(r.get('ratio'), 1)} |"
            )
        ratios = [r["ratio"] for r in doc["models"] if r["model"] in TABLE2 and "ratio" in r]
        if ratios:
            lines += [
                "",
                f"Table 2 models: nutpie / PyMC ESS per second, median "
                f"{np.median(ratios):.1f} (range {min(ratios):.1f}-{max(ratios):.1f}); "
                f"aim >= 5: {'reached' if min(ratios) >= 5 else 'not reached'}.",
            ]
        lines.append("")
    if doc.get("scaling"):
        lines += [
            "## Scaling: PEM with 2 binary covariates on simulated cohorts",
            "",
            "Collapsed: events and exposure per interval x covariate pattern (32 cells whatever "
            "n; one compiled model, data swapped). Expanded: one Poisson row per patient and "
            "interval at risk (compiled per size). Peak MB: rise of the resident-set high-water "
            "mark during the step over the resident set before it; a lower bound, since memory "
            "the process already holds is reused (`bench.json` also has the process's total "
            "peak, `*_peak_rss_mb`). Cox: lifelines `CoxPHFitter` (Efron ties) on the same data.",
            "",
            "| patients | events | collapse s | collapse peak MB | collapsed sampling s "
            "| collapsed ESS/s | expanded rows | expanded compile s | expanded sampling s "
            "| expanded peak MB | Cox s | Cox peak MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in doc["scaling"]:
            ess_s = r["collapsed_min_ess_bulk_median"] / r["collapsed_sampling_s_median"]
            lines.append(
                f"| {r['n']:,} | {r['events']:,} | {_f(r['collapsed_prepare_s'])} | "
                f"{_f(r['collapsed_prepare_peak_mb'], 0)} | {_f(r['collapsed_sampling_s_median'])}"
                f" | {_f(ess_s, 0)} | {r.get('expanded_rows', 'skipped')} | "
                f"{_f(r.get('expanded_compile_s'), 1)} | {_f(r.get('expanded_sampling_s_median'))}"
                f" | {_f(r.get('expanded_peak_mb_median'), 0)} | {_f(r.get('cox_s_median'))} | "
                f"{_f(r.get('cox_peak_mb_median'), 0)} |"
            )
        big = [r for r in doc["scaling"] if r["n"] >= 1_000_000]
        if big:
            s = big[0]["collapsed_sampling_s_median"]
            verdict = "reached" if s < 30 else "not reached"
            lines += [
                "",
                f"Collapsed PEM on {big[0]['n']:,} patients: {s:.1f} s of sampling after "
                f"compilation (aim < 30 s: {verdict}).",
            ]
        skipped = [
            f"{r['n']:,}: {r['expanded_skipped']}"
            for r in doc["scaling"]
            if "expanded_skipped" in r
        ]
        if skipped:
            lines += [
                "",
                "Expanded runs skipped (would not fit the time budget): "
                + "; ".join(skipped)
                + ".",
            ]
        lines.append("")
    lines += own_fit_markdown(doc.get("own_fit"))
    mf = doc.get("make_fit") or {}
    lines += ["## `make fit` wall time", ""]
    if "warm_s_median" in mf:
        reached = mf["warm_s_median"] < 60 and mf.get("members", 0) >= 20
        lines.append(
            f"Warm (this checkout, venv and caches in place): {mf['warm_s_median']:.1f} s "
            f"(runs: {', '.join(f'{t:.1f}' for t in mf['warm_s'])}; exit codes "
            f"{mf['exit_codes']}) with {mf.get('members', 0)} reconstructions "
            f"({mf.get('fits', 0)} fits in {mf.get('batches', 0)} batches, "
            f"{mf.get('refitted', 0)} refitted); aim < 60 s with at least 20 reconstructions: "
            f"{'reached' if reached else 'not reached'}."
        )
        lines += stage_lines(mf)
        failed = [t for t in mf.get("failure_tail", []) if t]
        if failed:
            lines.append(f"A run failed; its last lines: `{failed[0]}`")
    else:
        lines.append("Warm: not measured in this run (`--parts` without make_fit).")
    if "cold_s" in mf:
        lines.append(
            f"Cold (fresh clone, fresh venv): {mf['cold_s']:.1f} s (exit {mf['exit_code']})."
        )
    else:
        lines.append(
            "Cold: not measured in this run; measure with `vlms bench --cold` (clones the "
            "repository to a temporary folder and runs `make fit` there, creating the venv)."
        )
    lines += ["", f"Bench wall time: {doc['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def own_fit_markdown(block: dict[str, Any] | None) -> list[str]:
    """The section on one ``vlms fit --data`` run, first (compiling) and cached."""
    if not block:
        return []
    head = " | ".join(OWN_FIT_PHASES)
    lines = [
        f"## `vlms fit --data` on {block['patients']} patients ({block['events']} events)",
        "",
        f"`{block['command']}` in a new process each time (simulated CSV, one binary "
        "covariate; 4 chains x 1000 draws after 1000 tuning). First: empty compiled-model "
        "cache (`VLMS_CACHE_DIR`); then with the compiled model on disk. Steps as timed by the "
        "command (JSON `timings`); other: Python start-up and the command line. CPU: user "
        "plus system seconds of the process (sampling runs 2 chains at a time, so an idle "
        "2-core machine needs less wall time than CPU time); load: the 1-minute load average "
        "after the run (above 2, other work was competing for the 2 cores).",
        "",
        f"| run | wall s | CPU s | load | {head} | other | refits | exit |",
        "|---" * (len(OWN_FIT_PHASES) + 7) + "|",
    ]
    runs = [("first", block["first"])] + [(f"cached #{i}", r) for i, r in
                                          enumerate(block["second"], start=1)]  # fmt: skip
    for label, r in runs:
        t = r["timings"]
        other = r["wall_s"] - sum(t.get(k, 0.0) for k in OWN_FIT_PHASES)
        cells = " | ".join(_f(t.get(k)) for k in OWN_FIT_PHASES)
        lines.append(f"| {label} | {r['wall_s']:.1f} | {_f(r.get('cpu_s'), 1)} | "
                     f"{_f(r.get('load_average_after'), 1)} | {cells} | {_f(other)} | "
                     f"{r['refits']} | {r['exit']} |")  # fmt: skip
    s = block["second_wall_s_median"]
    lines += [
        "",
        f"Cached run: median {s:.1f} s wall (aim < 5 s on 2 cores: "
        f"{'reached' if s < 5 else 'not reached'}); first run {block['first']['wall_s']:.1f} s.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- command


def stage_lines(mf: dict[str, Any]) -> list[str]:
    """The stages of the first warm run: wall and CPU seconds, and the load around it."""
    runs = mf.get("stages") or []
    if not runs or not runs[0]:
        return []
    load = (mf.get("load_average") or [{}])[0]
    lines = [
        "",
        "Stages of the first run (`diagnose` and `compare` run side by side). CPU: user plus "
        "system seconds of the command and its workers; with 2 cores an idle machine needs "
        "about half as much wall time as CPU time where the work is parallel. Load average "
        f"(1 minute) before {load.get('before', float('nan')):.1f}, after "
        f"{load.get('after', float('nan')):.1f}: above 2, other work was competing for the "
        "cores and every wall time is longer than on an idle machine.",
        "",
        "| stage | wall s | CPU s | exit |",
        "|---|---|---|---|",
    ]
    for r in runs[0]:
        lines.append(f"| {r['command']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['exit']} |")
    return lines


def _sizes(text: str | None) -> list[int]:
    if not text:
        return list(SIZES)
    try:
        sizes = [int(float(t)) for t in text.split(",") if t.strip()]
    except ValueError:
        raise VlmsInputError("--sizes: expected comma-separated patient counts") from None
    if any(s < 10 for s in sizes):
        raise VlmsInputError("--sizes: each size must be at least 10")
    return sizes


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``vlms bench``."""
    log = _stderr
    repeats = int(args.repeats)
    if repeats < 1:
        raise VlmsInputError("--repeats must be at least 1")
    parts = set(getattr(args, "parts", None) or ["models", "scaling", "own_fit", "make_fit"])
    sizes = _sizes(getattr(args, "sizes", None))
    cohort_path = Path(getattr(args, "cohort", "data/cohort.csv"))
    root = Path(__file__).resolve().parents[2]
    t0 = time.perf_counter()
    doc: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seed": args.seed,
        "repeats": repeats,
        "machine": machine_info(),
    }
    if "models" in parts:
        from analysis.cohort import load_cohort

        df = load_cohort(cohort_path)
        which = getattr(args, "pymc_models", "table2")
        pymc_models = set(TABLE2) if which == "table2" else (set() if which == "none" else None)
        if pymc_models is None:
            from analysis.inference.registry import REGISTRY

            pymc_models = {s.name for s in REGISTRY}
        log(f"vlms bench: per-model timings on {cohort_path}")
        doc["models"] = bench_models(df, repeats, args.seed, pymc_models, log)
    if "scaling" in parts:
        log(f"vlms bench: scaling on {', '.join(f'{s:,}' for s in sizes)} patients")
        doc["scaling"] = bench_scaling(
            sizes,
            repeats,
            args.seed,
            int(getattr(args, "expanded_max", EXPANDED_MAX)),
            int(getattr(args, "cox_max", COX_MAX)),
            log,
        )
    if "own_fit" in parts:
        log("vlms bench: vlms fit --data on a 92-patient CSV, first and cached runs")
        doc["own_fit"] = bench_own_fit(root, repeats, args.seed, log)
    doc["make_fit"] = {}
    if "make_fit" in parts:
        log("vlms bench: make fit (warm)")
        doc["make_fit"] = bench_make_fit(root, int(getattr(args, "make_fit_repeats", 1)), log)
    if getattr(args, "cold", False):
        doc["make_fit"].update(bench_cold(root, log))
    doc["wall_seconds"] = time.perf_counter() - t0
    out = Path(args.out_dir)
    write_json(out / "bench.json", _jsonable(doc))
    write_text(out / "bench.md", markdown(doc))
    log(f"vlms bench: wrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 0


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if k != "compiled"}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
