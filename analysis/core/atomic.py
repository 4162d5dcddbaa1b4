"""Atomic file output: write to a temporary file in the target folder, then rename.

An interrupted or failed write leaves the previous file (or nothing) behind, never half a file.
A signal whose ``KeyboardInterrupt`` a library swallowed still stops the commit
(:func:`analysis.core.interrupt.check`). :func:`together` commits several files at once, so
that an interrupted command writes none of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from analysis.core import interrupt

_pending: list[list[tuple[Path, Path]]] = []
"""Open :func:`together` blocks: (temporary, target) pairs waiting to be renamed."""

_temp_listeners: list[Callable[[Path, str], None]] = []
"""Told (folder, name prefix) before a temporary file is created (see :func:`on_temp_file`)."""


def temp_prefix(target: Path) -> str:
    """Name prefix of this process's temporary files for ``target``."""
    return f".{target.name}.{os.getpid()}."


def on_temp_file(listener: Callable[[Path, str], None] | None) -> None:
    """Tell ``listener(folder, prefix)`` before each temporary file is created (None: stop).

    A worker process that a signal kills outright cannot remove its temporary file; its parent,
    told the prefix, removes it (:mod:`analysis.core.parallel`).
    """
    _temp_listeners.clear()
    if listener is not None:
        _temp_listeners.append(listener)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file is removed on any exception, ``KeyboardInterrupt`` and
    ``SystemExit`` included, and nothing is renamed after a recorded interrupt. Inside
    :func:`together` the rename waits for the end of the block.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = temp_prefix(target)
    for listener in _temp_listeners:
        listener(target.parent, prefix)
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        interrupt.hold("writing")
        interrupt.check()
        if _pending:
            _pending[-1].append((tmp, target))
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def together() -> Iterator[None]:
    """Commit every file written atomically inside the block at its end, or none of them.

    On an exception or a recorded interrupt the temporary files are removed and nothing is
    renamed. A signal during the renames is acted on after the last one (all files are then
    complete), so it cannot leave some of the files committed and others not.
    """
    batch: list[tuple[Path, Path]] = []
    _pending.append(batch)
    try:
        yield
        interrupt.check()
    except BaseException:
        for tmp, _target in batch:
            _remove(tmp)
        raise
    finally:
        _pending.remove(batch)
    with interrupt.deferred():
        for tmp, target in batch:
            os.replace(tmp, target)


def _remove(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN is written as null)."""
    return write_text(path, json.dumps(_nan_to_none(obj), indent=2, sort_keys=False) + "\n")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj
