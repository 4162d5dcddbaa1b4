"""The on-disk cache of compiled nutpie models: keys, round trip, safety."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from analysis.inference import compile_cache
from analysis.inference.data import make_fit_data
from analysis.inference.engine import SamplerSettings, nutpie_sample
from analysis.inference.kinds import KINDS, stored_names
from models.priors import Priors

CUTS = (0.0, 12.0, 36.0)


def _data(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    x = (rng.random(n) < 0.5).astype(float)
    t = rng.exponential(40 * np.exp(-0.5 * x)) + 0.01
    c = rng.uniform(5, 80, n)
    return make_fit_data(np.minimum(t, c), (t <= c).astype(int), {"x": x}, cuts=CUTS)


def _model(seed: int, priors: Priors | None = None, cuts: tuple = CUTS):
    data = dataclasses.replace(_data(seed), cuts=np.asarray(cuts))
    return KINDS["pem"].build(data, priors or Priors()), data


def _key(model) -> str:
    return compile_cache.cache_key(model, "pem", stored_names(model))


def test_key_ignores_data_values_but_not_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = _model(0)
    assert _key(base) == _key(_model(1)[0])  # other data, same shapes: same code
    assert _key(base) != _key(_model(0, Priors(effect_sd=2.0))[0])  # a prior constant
    assert _key(base) != _key(_model(0, Priors(parameterization="centred"))[0])
    assert _key(base) != _key(_model(0, cuts=(0.0, 12.0, 36.0, 60.0))[0])  # one more interval
    assert _key(base) != compile_cache.cache_key(base, "other", stored_names(base))
    assert _key(base) != compile_cache.cache_key(base, "pem", ["beta"])
    before = _key(base)
    monkeypatch.setattr(compile_cache, "version", lambda package: "0.0-other")
    assert _key(base) != before  # another library version


def test_key_is_the_same_in_every_process() -> None:
    """A ``None`` constant (as a random variable's ``size``; the imputed models have one) is
    keyed by its value, not by its bytes (an address that changes from process to process:
    the imputed structure then got a new key, and a 50 s compile, in every run)."""
    code = (
        "import pytensor.tensor as pt\n"
        "from analysis.inference.compile_cache import graph_fingerprint\n"
        "print(graph_fingerprint([pt.random.normal(0, 1)]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    keys = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout
        for _ in range(2)
    }
    assert len(keys) == 1


def test_cache_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(compile_cache.CACHE_ENV, str(tmp_path))
    assert compile_cache.cache_dir() == tmp_path
    monkeypatch.setenv(compile_cache.CACHE_ENV, "off")
    assert compile_cache.cache_dir() is None
    monkeypatch.delenv(compile_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.cache_dir() == tmp_path / "xdg" / "vlms" / "compiled"


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory):
    """One model compiled into a fresh cache folder, then loaded back from disk."""
    folder = tmp_path_factory.mktemp("compiled")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(compile_cache.CACHE_ENV, str(folder))
        mp.setattr(compile_cache, "_LOADED", {})
        model, data = _model(0)
        first = compile_cache.compile_cached(model, "pem", var_names=stored_names(model))
        mp.setattr(compile_cache, "_LOADED", {})  # as in a new process
        model2, data2 = _model(1)
        second = compile_cache.compile_cached(model2, "pem", var_names=stored_names(model2))
        again = compile_cache.compile_cached(model2, "pem", var_names=stored_names(model2))
    return {"first": first, "second": second, "again": again, "data": data, "data2": data2,
            "model2": model2, "folder": folder}  # fmt: skip


def test_compiled_then_loaded_from_disk_then_from_memory(cached: dict) -> None:
    assert cached["first"].source == "compiled"
    assert cached["second"].source == "disk"
    assert cached["again"].source == "memory"
    assert cached["first"].key == cached["second"].key
    files = list(cached["folder"].iterdir())
    assert [p.name for p in files] == [f"{cached['first'].key}.nutpie"]  # no temporary files


def test_loaded_model_gives_the_same_draws(cached: dict) -> None:
    settings = SamplerSettings(draws=50, tune=50, chains=2, seed=5)
    values = KINDS["pem"].data_dict(cached["data2"])
    fresh = nutpie_sample(cached["first"].model.with_data(**values), settings)
    loaded = nutpie_sample(cached["second"].model, settings)  # holds data2 already
    for name in ("beta", "log_h0", "rw_sigma"):
        np.testing.assert_array_equal(fresh.posterior[name].values, loaded.posterior[name].values)


def test_loaded_callback_matches_pytensor(cached: dict) -> None:
    compiled, model = cached["second"].model, cached["model2"]
    names, _, shapes = compiled.shape_info
    k = len(model.free_RVs)
    point = compiled.initial_point_func(3) + 0.1
    got = compile_cache.callback_logp(compiled, point)
    want = compile_cache.reference_logp(model, point, names[:k], shapes[:k])
    assert got[0] == pytest.approx(want[0], rel=1e-10)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-8)


def test_an_entry_of_another_model_is_rejected(cached: dict) -> None:
    path = cached["folder"] / f"{cached['first'].key}.nutpie"
    other, _ = _model(0, Priors(effect_sd=0.3))  # same shapes, another log density
    assert compile_cache._load(path, other, stored_names(other)) is None
    same, _ = _model(2)
    assert compile_cache._load(path, same, stored_names(same)) is not None


def test_unreadable_entries_count_as_absent(tmp_path: Path, cached: dict) -> None:
    model = cached["model2"]
    assert compile_cache._load(tmp_path / "absent.nutpie", model, None) is None
    bad = tmp_path / "bad.nutpie"
    bad.write_bytes(b"not a pickle")
    assert compile_cache._load(bad, model, None) is None


def test_concurrent_writers_leave_one_whole_entry(tmp_path: Path, cached: dict) -> None:
    compiled = cached["first"].model
    path = tmp_path / "entry.nutpie"
    threads = [
        threading.Thread(target=compile_cache._save, args=(path, compiled, "k")) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.name for p in tmp_path.iterdir()] == ["entry.nutpie"]
    model, _ = _model(3)
    assert compile_cache._load(path, model, stored_names(model)) is not None


def test_prune_keeps_the_most_recently_used_entries(tmp_path: Path) -> None:
    import os

    for i in range(5):
        path = tmp_path / f"e{i}.nutpie"
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
    (tmp_path / "other.txt").write_text("not an entry")
    old_temp, new_temp = tmp_path / ".e9.nutpie.abc.tmp", tmp_path / ".e8.nutpie.def.tmp"
    old_temp.write_bytes(b"half")
    os.utime(old_temp, (1000, 1000))  # left by a killed writer long ago
    new_temp.write_bytes(b"half")  # being written now
    removed = compile_cache.prune(tmp_path, keep=3)
    assert sorted(p.name for p in removed) == [".e9.nutpie.abc.tmp", "e0.nutpie", "e1.nutpie"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".e8.nutpie.def.tmp",
        "e2.nutpie",
        "e3.nutpie",
        "e4.nutpie",
        "other.txt",
    ]


def test_code_bound_to_this_process_is_not_saved(tmp_path: Path, cached: dict) -> None:
    """``pt.erfcx`` compiles to a call through a pointer into SciPy (valid in this process
    only: loaded by another process, the code crashed). Such a model is compiled and kept in
    memory, never written; the PEM's code has no such pointer and is written."""
    import pymc as pm
    import pytensor.tensor as pt

    with pm.Model() as model:
        x = pm.Normal("x")
        pm.Potential("p", pt.log(pt.erfcx(x**2)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(compile_cache.CACHE_ENV, str(tmp_path))
        mp.setattr(compile_cache, "_LOADED", {})
        first = compile_cache.compile_cached(model, "erfcx", var_names=["x"])
        again = compile_cache.compile_cached(model, "erfcx", var_names=["x"])
    assert compile_cache.process_bound(first.model)
    assert (first.source, again.source) == ("compiled", "memory")
    assert list(tmp_path.iterdir()) == []
    assert not compile_cache.process_bound(cached["first"].model)
