"""Atomic writes leave nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.core.atomic import atomic_path, write_json


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_previous(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_write_json_nan_is_null(tmp_path: Path) -> None:
    target = write_json(tmp_path / "x.json", {"v": float("nan"), "w": [1.0, float("nan")]})
    assert target.read_text().count("null") == 2
