"""shared.statefile: the one way services keep small JSON state across a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shared import statefile
from shared.statefile import StateFileError, read_versioned, versioned_json, write_atomic, write_versioned


class OwnError(StateFileError):
    """A caller's own error class (BudgetFileError, HistoryFileError are such)."""


def test_round_trip_with_the_version_first(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "thing.json"  # parents are made
    write_versioned(path, 3, {"step_s": 1800, "slots": [[1, 2.5, 0.0, 4]]})
    assert path.read_text() == '{"version": 3, "step_s": 1800, "slots": [[1, 2.5, 0.0, 4]]}'
    assert read_versioned(path, 3, "thing") == {"version": 3, "step_s": 1800, "slots": [[1, 2.5, 0.0, 4]]}
    assert versioned_json(3, {"a": 1}) == json.dumps({"version": 3, "a": 1})


def test_a_missing_file_is_nothing_saved_yet(tmp_path: Path) -> None:
    assert read_versioned(tmp_path / "missing.json", 1, "thing") is None


@pytest.mark.parametrize("text", ["{not json", "", '{"version": 1, "slots": [1, 2'])
def test_bad_json_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(StateFileError, match=rf"^{path}: not JSON \("):
        read_versioned(path, 1, "thing")


@pytest.mark.parametrize("data", [{"version": 2, "slots": []}, {"slots": []}, {"version": "1"}, [1], 1, None])
def test_another_version_or_no_object_is_an_error(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    with pytest.raises(StateFileError, match=rf"^{path}: not a version 1 dispatcher history$"):
        read_versioned(path, 1, "dispatcher history")


def test_an_unreadable_file_is_an_error_and_the_callers_class_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "a-directory.json"
    path.mkdir()  # exists, but reading it fails (IsADirectoryError)
    with pytest.raises(OwnError, match=rf"^{path}: cannot read \("):
        read_versioned(path, 1, "thing", error=OwnError)
    (tmp_path / "x.json").write_text("[")
    with pytest.raises(OwnError, match="not JSON"):
        read_versioned(tmp_path / "x.json", 1, "thing", error=OwnError)


def test_write_replaces_the_file_whole_through_a_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "budgets.json"
    write_atomic(path, "old")
    seen: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        # At the rename the new text is complete in the temp file and the old file is untouched.
        seen.append((Path(src).name, Path(src).read_text(), Path(dst).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(statefile.os, "replace", replace)
    write_atomic(path, "new " * 1000)
    assert seen == [("budgets.json.tmp", "new " * 1000, "old")]
    assert path.read_text() == "new " * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budgets.json"]  # no temp file left


def test_a_write_that_fails_before_the_rename_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "history.json"
    write_versioned(path, 1, {"slots": []})

    def fail(*_args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statefile.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_versioned(path, 1, {"slots": [[1, 1.0, 1.0, 1]]})
    assert read_versioned(path, 1, "thing") == {"version": 1, "slots": []}


def test_fsync_flushes_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(statefile.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(statefile.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    write_atomic(tmp_path / "w.json", "{}")
    assert calls == ["replace"]
    calls.clear()
    write_atomic(tmp_path / "w.json", "{}", fsync=True)
    assert calls == ["fsync", "replace"]


@pytest.mark.parametrize("raw", [b'{"version": 1, "x": "\xff\xfe"}', b"\x00\x9c\xf0" * 50])
def test_bytes_that_are_not_text_are_an_error_naming_the_file(tmp_path: Path, raw: bytes) -> None:
    # A torn or scribbled file (a card's bad block) must read as a state file error, which every
    # caller moves aside: a bare UnicodeDecodeError would end the service at every start.
    path = tmp_path / "scribbled.json"
    path.write_bytes(raw)
    with pytest.raises(OwnError, match=rf"^{path}: not JSON \("):
        read_versioned(path, 1, "thing", error=OwnError)
