"""Compiled nutpie models kept on disk between runs: :func:`compile_cached`.

nutpie's numba backend spends 10-15 s per model structure turning the PyMC model into two C
callbacks (log density with gradient, and the expansion to the stored variables), and does it
again in every process. Here the machine code of both callbacks is saved after the first
compilation and loaded (well under a second) by later processes.

Usage (any model, any caller)::

    from analysis.inference.compile_cache import compile_cached

    cached = compile_cached(pymc_model, key="pem/2 slots", var_names=["beta", "log_h0"])
    trace = nutpie.sample(cached.model.with_data(**new_values), ...)

Always pass the current data with ``with_data`` when sampling: a model loaded from the cache
holds the data of the current ``pymc_model``, but nothing else of the run that compiled it.

Safety
------
* The cache key is a SHA-256 of the log-density graph and the graph of the stored variables
  (every operation, every constant's bytes, the names, types and ranks of the data
  containers), the lengths of the model's dims and the shapes of its data containers (the
  compiled code is specialised to them), ``var_names``, the caller's ``key``, the versions of
  Python and of every package that shapes the code (pymc, pytensor, nutpie, numba, llvmlite,
  numpy), and the host CPU that numba compiles for. A changed model, prior constant, data
  shape or library never reuses an old entry; new data of the same shapes does.
* On every load the cached log density and gradient are checked against PyTensor's own
  evaluation of the current model at its initial point; a mismatch discards the entry and
  compiles afresh.
* Entries are written to a temporary file in the cache directory and renamed into place, so
  concurrent writers (parallel workers, two users' runs) never leave a partial file, and a
  reader sees either no entry or a whole one. An unreadable entry is treated as absent.

Location: ``$VLMS_CACHE_DIR`` if set (``off`` disables the cache), else
``$XDG_CACHE_HOME/vlms/compiled`` (default ``~/.cache/vlms/compiled``). Entries are small
(1-2 MB each); the folder keeps the ``MAX_ENTRIES`` most recently used and drops older ones.
Delete the folder to clear the cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import pickle
import platform
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core import interrupt
from analysis.core.atomic import write_bytes

CACHE_ENV = "VLMS_CACHE_DIR"
FORMAT = 2
"""Version of the entry layout; bump when it changes (2: code holding addresses of the
compiling process is no longer saved; entries of format 1 may hold such code)."""
KEY_PACKAGES = ("pymc", "pytensor", "nutpie", "numba", "llvmlite", "numpy")
CHECK_RTOL = 1e-9
"""Relative tolerance of the load check (the same machine code on the same inputs agrees to
rounding; a different model does not)."""

MAX_ENTRIES = 200
"""Entries kept in the cache folder (the least recently used beyond this are removed)."""
STALE_TEMP_SECONDS = 3600.0
"""A temporary file this old was left by a writer that was killed (writing takes a second)."""

_LOADED: dict[str, Any] = {}
"""Entries compiled or loaded in this process (machine code is loaded once per process)."""


@dataclass(frozen=True)
class CachedCompile:
    """Result of :func:`compile_cached`.

    Attributes
    ----------
    model
        The nutpie compiled model (``nutpie.compile_pymc_model``'s type).
    source
        ``"compiled"`` (compiled now, and saved), ``"disk"`` (loaded from the cache) or
        ``"memory"`` (already compiled or loaded in this process).
    seconds
        Wall seconds spent (compiling, or loading and checking).
    key
        The hex digest that names the entry.
    path
        The entry's file (``None`` when the cache is off).
    """

    model: Any
    source: str
    seconds: float
    key: str
    path: Path | None


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when ``VLMS_CACHE_DIR=off``."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("off", "none", "0", "") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vlms" / "compiled"


def compile_cached(
    model: Any, key: str = "", *, var_names: Iterable[str] | None = None, use_cache: bool = True
) -> CachedCompile:
    """Compile ``model`` with nutpie's numba backend, or load it from the disk cache.

    Parameters
    ----------
    model
        A ``pymc.Model`` whose data containers hold the data to sample first.
    key
        Extra text for the cache key (e.g. the model kind); the graph fingerprint is always
        part of the key, so ``key`` only needs to tell apart what the graph does not show.
    var_names
        Variables to store in the trace (as ``nutpie.compile_pymc_model``).
    use_cache
        ``False``: compile afresh and leave both caches alone (to time a compilation).

    Returns
    -------
    CachedCompile
        ``model`` field: a nutpie compiled model holding ``model``'s current data.
    """
    t0 = time.perf_counter()
    names = None if var_names is None else list(var_names)
    digest = cache_key(model, key, names)
    if not use_cache:
        return CachedCompile(_compile(model, names), "compiled", time.perf_counter() - t0, digest,
                             None)  # fmt: skip
    folder = cache_dir()
    path = None if folder is None else folder / f"{digest}.nutpie"
    if digest in _LOADED:
        compiled = _with_model_data(_LOADED[digest], model)
        return CachedCompile(compiled, "memory", time.perf_counter() - t0, digest, path)
    if path is not None:
        compiled = _load(path, model, names)
        if compiled is not None:
            _LOADED[digest] = compiled
            return CachedCompile(compiled, "disk", time.perf_counter() - t0, digest, path)
    compiled = _compile(model, names)
    _LOADED[digest] = compiled
    if path is not None:
        _save(path, compiled, digest)
    return CachedCompile(compiled, "compiled", time.perf_counter() - t0, digest, path)


# --------------------------------------------------------------------------- the key


def cache_key(model: Any, key: str = "", var_names: list[str] | None = None) -> str:
    """Hex SHA-256 naming the compiled code of ``model`` on this machine and these libraries."""
    h = hashlib.sha256()
    h.update(f"vlms-compiled/{FORMAT}\0{key}\0{var_names!r}\0".encode())
    h.update(_environment().encode())
    h.update(_shapes(model).encode())
    h.update(graph_fingerprint(_model_outputs(model)).encode())
    return h.hexdigest()


def _shapes(model: Any) -> str:
    """The lengths of the model's dims and the shapes of its data containers: the graph leaves
    them symbolic, but the compiled callbacks are specialised to them."""
    dims = {name: len(values) for name, values in model.coords.items() if values is not None}
    data = {}
    for var in model.data_vars:
        value = var.get_value() if hasattr(var, "get_value") else getattr(var, "data", None)
        data[var.name] = np.shape(value)
    return f"dims={sorted(dims.items())!r}\0data={sorted(data.items())!r}\0"


def _environment() -> str:
    parts = [f"python={sys.version}", f"machine={platform.machine()}"]
    for package in KEY_PACKAGES:
        try:
            parts.append(f"{package}={version(package)}")
        except Exception:
            parts.append(f"{package}=?")
    try:
        import llvmlite.binding as llvm

        parts.append(f"cpu={llvm.get_host_cpu_name()}:{llvm.get_host_cpu_features().flatten()}")
    except Exception:
        parts.append("cpu=?")
    return "\0".join(parts)


def _model_outputs(model: Any) -> list[Any]:
    """The graphs nutpie compiles: the joint log density and every stored variable, with the
    value variables (names and transforms) that the free variables become."""
    outputs = [model.logp()]
    outputs += [model.rvs_to_values[v] for v in model.free_RVs]
    outputs += list(model.unobserved_value_vars)
    return outputs


def graph_fingerprint(outputs: list[Any]) -> str:
    """Hex SHA-256 of PyTensor graphs: operations, wiring, types, constants' bytes, and the
    names, types and ranks (not the values) of shared variables."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import graph_inputs, io_toposort

    h = hashlib.sha256()
    ids: dict[Any, int] = {}

    def ref(var: Any) -> str:
        if var not in ids:
            ids[var] = len(ids)
            if isinstance(var, Constant):
                desc = f"const {var.type} {_constant_text(var.data)}"
            elif isinstance(var, SharedVariable):
                desc = f"shared {var.name} {var.type}"
            else:
                desc = f"var {var.name} {var.type}"
            h.update(f"{ids[var]}={desc}\n".encode())
        return str(ids[var])

    inputs = list(graph_inputs(outputs))
    for node in io_toposort(inputs, outputs):
        args = ",".join(ref(v) for v in node.inputs)
        outs = ",".join(ref(v) for v in node.outputs)
        h.update(f"{type(node.op).__qualname__}[{_op_text(node.op)}]({args})->{outs}\n".encode())
    h.update((",".join(ref(v) for v in outputs)).encode())
    return h.hexdigest()


def _constant_text(value: Any) -> str:
    """A constant's dtype, shape and value. Bytes for numbers; ``repr`` for objects (e.g.
    PyTensor's ``NoneConst``), whose bytes are addresses that change from process to process
    and would give the same model a new key in every run."""
    data = np.asarray(value)
    if data.dtype.hasobject:
        return f"{data.dtype} {data.shape} {data.tolist()!r}"
    return f"{data.dtype} {data.shape} {data.tobytes().hex()}"


def _op_text(op: Any) -> str:
    props = getattr(op, "__props__", None)
    if props is None:
        return str(op)
    return ";".join(f"{p}={getattr(op, p)!s}" for p in props)


# --------------------------------------------------------------------------- compile and save


def _compile(model: Any, var_names: list[str] | None) -> Any:
    """nutpie's compilation, stopped by Ctrl-C or SIGTERM even when numba swallows the
    interrupt (:func:`analysis.core.interrupt.guard`; as ``engine.compile_nutpie``)."""
    import nutpie

    with interrupt.guard():
        return nutpie.compile_pymc_model(model, var_names=var_names)


def _callback_state(cfunc: Any) -> dict[str, Any]:
    from numba.core.environment import lookup_environment
    from numba.core.serialize import dumps

    library = cfunc._library
    envs = []
    for gv in library._final_module.global_variables:
        if gv.name.startswith("_ZN08NumbaEnv"):
            env = lookup_environment(gv.name)
            if env is not None and env.can_cache():
                envs.append(env)
    return {
        "library": library.serialize_using_object_code(),
        "wrapper": cfunc._wrapper_name,
        "envs": dumps(tuple(envs)),
    }


def process_bound(compiled: Any) -> bool:
    """Whether the compiled callbacks hold addresses valid in this process only (numba's
    "dynamic globals": e.g. ``pt.erfcx``, which PyTensor's numba backend calls through a
    pointer into SciPy's ``cython_special``). Such code crashes when loaded by another process,
    so it is kept in memory but never saved (numba's own cache refuses it for the same reason).
    """
    # a callback loaded from the cache (LoadedCallback) has no numba library: it was saved,
    # so it was checked then
    return any(
        getattr(getattr(func, "_library", None), "has_dynamic_globals", False)
        for func in (compiled.compiled_logp_func, compiled.compiled_expand_func)
    )


def _save(path: Path, compiled: Any, digest: str) -> None:
    """Write the entry atomically; a failure to write only costs the next run a compile. Code
    bound to this process (:func:`process_bound`) is not written."""
    if process_bound(compiled):
        return
    try:
        state = {
            "format": FORMAT,
            "key": digest,
            "logp": _callback_state(compiled.compiled_logp_func),
            "expand": _callback_state(compiled.compiled_expand_func),
            "n_dim": compiled.n_dim,
            "n_expanded": compiled.n_expanded,
            "shape_info": compiled.shape_info,
            "user_dtype": compiled.user_data.dtype,
            "shared": [(k, v.ndim, v.dtype.str) for k, v in compiled.shared_data.items()],
        }
        write_bytes(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as exc:
        warnings.warn(f"compiled-model cache not written ({exc})", RuntimeWarning, stacklevel=3)
        return
    prune(path.parent)


def prune(folder: Path, keep: int | None = None) -> list[Path]:
    """Remove the least recently used entries beyond ``keep`` (default ``MAX_ENTRIES``), and
    temporary files older than ``STALE_TEMP_SECONDS`` (left by a writer that was killed);
    returns the removed files. Safe with concurrent pruners (a file already gone is skipped)."""
    keep = MAX_ENTRIES if keep is None else keep
    entries, stale = [], []
    now = time.time()
    for p in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            mtime = p.stat().st_mtime
            if p.suffix == ".nutpie":
                entries.append((mtime, p))
            elif p.name.startswith(".") and p.suffix == ".tmp" and now - mtime > STALE_TEMP_SECONDS:
                stale.append(p)
    entries.sort(reverse=True)
    removed = []
    for p in [p for _, p in entries[keep:]] + stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


# --------------------------------------------------------------------------- load and check


@dataclass(frozen=True)
class LoadedCallback:
    """A C callback loaded from the cache: its address, and what must stay alive with it."""

    address: int
    library: Any
    envs: tuple


def _load_callback(state: dict[str, Any]) -> LoadedCallback:
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    library = codegen.unserialize_library(state["library"])
    address = library.get_pointer_to_function(state["wrapper"])
    if not address:
        raise ValueError("callback symbol not found in the cached code")
    envs = pickle.loads(state["envs"])
    for env in envs:
        library.codegen.set_env(env.env_name, env)
    return LoadedCallback(address=address, library=library, envs=envs)


def _load(path: Path, model: Any, var_names: list[str] | None) -> Any | None:
    """The compiled model from ``path`` with ``model``'s data, or ``None`` (absent, unreadable,
    or failing the check)."""
    try:
        state = pickle.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception:
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None
    try:
        compiled = _rebuild(state, model, var_names)
    except Exception:
        return None
    if not _agrees_with_pytensor(compiled, model):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # most recently used: kept longest by prune()
    return compiled


def _rebuild(state: dict[str, Any], model: Any, var_names: list[str] | None) -> Any:
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _prepare_dims_and_coords,
        _rv_dict_to_flat_array_wrapper,
        _wrap_with_lock,
        update_user_data,
    )
    from pymc.initial_point import make_initial_point_fn

    shared_data = {}
    for name, ndim, dtype in state["shared"]:
        value = np.array(model[name].get_value(), dtype=np.dtype(dtype), order="C", copy=True)
        if value.ndim != ndim:
            raise ValueError(f"data container {name} has rank {value.ndim}, cached {ndim}")
        value.flags.writeable = False
        shared_data[name] = value
    user_data = update_user_data(np.zeros((), dtype=state["user_dtype"]), shared_data)
    names, _, shapes = state["shape_info"]
    n_free = len(model.free_RVs)
    point_fn = make_initial_point_fn(
        model=model,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    initial = _rv_dict_to_flat_array_wrapper(
        _wrap_with_lock(point_fn), names=names[:n_free], shapes=shapes[:n_free]
    )
    dims, coords = _prepare_dims_and_coords(model, state["shape_info"])
    return CompiledPyMCModel(
        _n_dim=state["n_dim"],
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*state["shape_info"], strict=True)},
        compiled_logp_func=_load_callback(state["logp"]),
        compiled_expand_func=_load_callback(state["expand"]),
        initial_point_func=initial,
        shared_data=shared_data,
        user_data=user_data,
        n_expanded=state["n_expanded"],
        shape_info=state["shape_info"],
        logp_func=None,
        expand_func=None,
    )


def _with_model_data(compiled: Any, model: Any) -> Any:
    """``compiled`` with the data containers of ``model`` (same structure)."""
    return compiled.with_data(**{name: model[name].get_value() for name in compiled.shared_data})


_LOGP_SIGNATURE = ctypes.CFUNCTYPE(
    ctypes.c_int64,
    ctypes.c_uint64,
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.c_void_p,
)


def callback_logp(compiled: Any, point: np.ndarray) -> tuple[float, np.ndarray]:
    """Log density and gradient from the compiled C callback at an unconstrained ``point``."""
    x = np.ascontiguousarray(point, dtype=np.float64)
    grad = np.zeros_like(x)
    logp = np.zeros(1)
    fn = _LOGP_SIGNATURE(compiled.compiled_logp_func.address)
    status = fn(
        x.size,
        x.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        grad.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        logp.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        ctypes.c_void_p(compiled.user_data.ctypes.data),
    )
    if status != 0:
        raise ValueError(f"compiled log density returned status {status}")
    return float(logp[0]), grad


def reference_logp(model: Any, point: np.ndarray, names: list[str], shapes: list) -> tuple:
    """Log density and gradient of ``model`` by PyTensor (no numba), at the same flat point."""
    import pytensor

    values = model.value_vars
    by_name = {v.name: v for v in values}
    ordered = [by_name[n] for n in names]
    logp = model.logp()
    grads = pytensor.grad(logp, ordered)
    plain = pytensor.compile.mode.Mode(linker="py", optimizer=None)  # no rewrites, no C
    fn = pytensor.function(ordered, [logp, *grads], mode=plain, on_unused_input="ignore")
    args, cursor = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        args.append(point[cursor : cursor + size].reshape(shape))
        cursor += size
    out = fn(*args)
    return float(out[0]), np.concatenate([np.ravel(g) for g in out[1:]])


def _agrees_with_pytensor(compiled: Any, model: Any) -> bool:
    names, _, shapes = compiled.shape_info
    n_free = len(model.free_RVs)
    point = compiled.initial_point_func(0)
    try:
        got = callback_logp(compiled, point)
        want = reference_logp(model, point, names[:n_free], shapes[:n_free])
    except Exception:
        return False
    return bool(
        np.isclose(got[0], want[0], rtol=CHECK_RTOL, atol=1e-9)
        and np.allclose(got[1], want[1], rtol=1e-7, atol=1e-9)
    )
