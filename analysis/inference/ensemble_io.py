"""The reconstruction ensemble's fits on disk.

Per registry model ``<name>`` (under ``<out_dir>/fits/``):

* ``ensemble/<name>.nc``: every member's posterior, InferenceData with groups ``posterior``
  (dims ``chain, draw, reconstruction, ...``; float32) and ``sample_stats`` (``diverging`` per
  ``chain, draw, reconstruction``: members sampled in one batch share it). ``reconstruction``
  holds the member numbers of ``data/cohorts.csv``.
* ``ensemble/<name>.members.csv``: one row per member: its sampling bar (max R-hat, min bulk and
  tail ESS over every parameter, divergences), the attempt that met it, seed, draws, thinning,
  target acceptance and batch.
* ``pooled/<name>.nc``: the pooled posterior, the equal-weight mixture of the members' draws
  (every member keeps the same number of draws): ``beta``, ``hr`` and ``log_h0`` over a dim
  ``sample`` with coordinates ``reconstruction``, ``chain``, ``draw`` telling where each draw came
  from. It integrates over the reconstruction: quantities the paper prints agree across members
  by construction; the rest vary, and that spread is part of the pooled posterior.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from analysis.core.atomic import atomic_path, write_text

MEMBER_DIM = "reconstruction"
POOLED_VARS = ("beta", "hr", "log_h0")
STATS_KEPT = ("diverging",)


def ensemble_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "fits" / "ensemble"


def pooled_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "fits" / "pooled"


def member_key(name: str, member: int) -> str:
    """The job key of registry model ``name`` on ensemble member ``member``."""
    return f"{name}@{member}"


def stack_members(
    posteriors: Sequence[xr.Dataset], stats: Sequence[xr.Dataset], members: Sequence[int]
) -> tuple[xr.Dataset, xr.Dataset]:
    """Concatenate members' draws along ``reconstruction`` (draw coords reset to 0..D-1)."""
    draws = {int(p.sizes["draw"]) for p in posteriors}
    if len(draws) != 1:
        raise ValueError(f"members have different numbers of draws: {sorted(draws)}")

    def reset(ds: xr.Dataset) -> xr.Dataset:
        return ds.assign_coords(
            draw=np.arange(ds.sizes["draw"]), chain=np.arange(ds.sizes["chain"])
        )

    index = pd.Index(list(members), name=MEMBER_DIM)
    post = xr.concat([reset(p) for p in posteriors], dim=index).astype("float32")
    kept = [reset(s[[v for v in STATS_KEPT if v in s]]) for s in stats]
    return post.transpose("chain", "draw", MEMBER_DIM, ...), xr.concat(kept, dim=index)


def pooled(post: xr.Dataset) -> xr.Dataset:
    """The equal-weight mixture of the members' draws: a ``sample`` dim over (reconstruction,
    chain, draw), with those three as coordinates of each sample."""
    keep = post[[v for v in POOLED_VARS if v in post]]
    stacked = keep.stack(sample=(MEMBER_DIM, "chain", "draw"))
    index = stacked.indexes["sample"]
    flat = stacked.drop_vars(["sample", MEMBER_DIM, "chain", "draw"])
    flat = flat.assign_coords(
        {
            MEMBER_DIM: ("sample", index.get_level_values(MEMBER_DIM).to_numpy()),
            "chain": ("sample", index.get_level_values("chain").to_numpy()),
            "draw": ("sample", index.get_level_values("draw").to_numpy()),
        }
    )
    return flat.transpose("sample", ...)


def write_members(
    out_dir: Path,
    name: str,
    post: xr.Dataset,
    stats: xr.Dataset,
    table: pd.DataFrame,
    attrs: dict[str, Any],
) -> None:
    """Write ``ensemble/<name>.nc``, ``ensemble/<name>.members.csv`` and ``pooled/<name>.nc``."""
    from analysis.inference.diagnostics import make_idata
    from analysis.inference.engine import save_idata

    post = post.assign_attrs(attrs)
    save_idata(make_idata(posterior=post, sample_stats=stats), ensemble_dir(out_dir) / f"{name}.nc")
    write_text(ensemble_dir(out_dir) / f"{name}.members.csv", table.to_csv(index=False))
    mix = pooled(post).assign_attrs(
        {**attrs, "meaning": "pooled posterior: equal-weight mixture of the members' draws"}
    )
    with atomic_path(pooled_dir(out_dir) / f"{name}.nc") as tmp:
        mix.to_netcdf(str(tmp), engine="h5netcdf")


def clear_members(out_dir: Path, names: Sequence[str]) -> list[Path]:
    """Remove the ensemble files (``ensemble/<name>.nc``, ``.members.csv``, ``pooled/<name>.nc``)
    of models ``names``: a run that fits them on the cohort only must not leave an earlier run's
    members behind for ``vlms diagnose`` and ``vlms compare`` to read. Returns what it removed."""
    removed = []
    for name in names:
        for path in (
            ensemble_dir(out_dir) / f"{name}.nc",
            ensemble_dir(out_dir) / f"{name}.members.csv",
            pooled_dir(out_dir) / f"{name}.nc",
        ):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def load_pooled(out_dir: Path, name: str) -> xr.Dataset | None:
    """``pooled/<name>.nc`` (loaded into memory), or None."""
    path = pooled_dir(out_dir) / f"{name}.nc"
    if not path.is_file():
        return None
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def load_member_table(out_dir: Path, name: str) -> pd.DataFrame | None:
    """``ensemble/<name>.members.csv``, or None."""
    path = ensemble_dir(out_dir) / f"{name}.members.csv"
    return pd.read_csv(path) if path.is_file() else None


def member_names(out_dir: Path) -> list[str]:
    """Models with saved ensemble fits."""
    return sorted(p.stem for p in ensemble_dir(out_dir).glob("*.nc"))


def saved_ensemble(out_dir: Path) -> tuple[str | None, dict[str, list[int]]]:
    """The ensemble file the saved member fits came from (their ``ensemble_source``) and, per
    model, the members fitted (``vlms fit --members N`` fits the first N; a run with ``--only``
    rewrites only its models' files); ``(None, {})`` without any."""
    names = member_names(out_dir)
    if not names:
        return None, {}
    from analysis.inference.diagnostics import load_fit, member_bars

    post = load_fit(ensemble_dir(out_dir) / f"{names[0]}.nc").posterior
    fitted = {
        name: sorted(int(r) for r in member_bars(ensemble_dir(out_dir) / f"{name}.nc")[MEMBER_DIM])
        for name in names
    }
    return post.attrs.get("ensemble_source"), fitted
