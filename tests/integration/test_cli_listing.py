"""The CLI lists a command's input once (issue 23): the stage lists it; the CLI only probes that it exists,
so input errors still exit 2 with the listing's own messages, and nothing is created before them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from batchsep.cli.main import EXIT_OK, EXIT_USAGE, main
from batchsep.io import storage

SR = 16000


def _corpus(root: Path, n: int = 3) -> None:
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        x = (0.1 * rng.standard_normal(int(0.5 * SR))).astype(np.float32)
        sf.write(root / ("sub" if i % 2 else "") / f"f{i}.wav", x, SR)
    (root / "notes.txt").write_text("not audio")


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, bool]]:
    """Every listing through the storage layer: (URI, entries yielded, listed to its end)."""
    calls: list[tuple[str, int, bool]] = []
    real_iter, real_list = storage.iter_files, storage.list_files

    def iter_files(uri: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        n, whole = 0, False
        try:
            for entry in real_iter(uri, *args, **kwargs):
                n += 1
                yield entry
            whole = True
        finally:
            calls.append((str(uri), n, whole))

    def list_files(uri: str, *args: Any, **kwargs: Any) -> Any:
        out = real_list(uri, *args, **kwargs)
        calls.append((str(uri), len(out), True))
        return out

    monkeypatch.setattr(storage, "iter_files", iter_files)
    monkeypatch.setattr(storage, "list_files", list_files)
    return calls


def _of(calls: list[tuple[str, int, bool]], uri: Path) -> tuple[int, list[int]]:
    """Whole listings of ``uri``, and the entries each partial one (a probe) read."""
    mine = [c for c in calls if c[0] == str(uri)]
    return sum(whole for _, _, whole in mine), [n for _, n, whole in mine if not whole]


def test_scan_lists_its_input_once(tmp_path, listings):
    root = tmp_path / "in"
    _corpus(root)
    r = CliRunner().invoke(main, ["scan", str(root), "--out", str(tmp_path / "run"), "--local"])
    assert r.exit_code == EXIT_OK, r.output
    assert "scanned 3 audio files" in r.output
    whole, probes = _of(listings, root)
    assert whole == 1 and all(n <= 1 for n in probes), listings


def test_enhance_lists_its_input_once(tmp_path, model_uri, listings):
    root = tmp_path / "in"
    _corpus(root)
    out = tmp_path / "out"
    args = ["enhance", str(root), str(out), "--model", model_uri, "--no-emotion", "--local"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == EXIT_OK, r.output
    assert "enhanced 3 files: 3 ok, 0 failed" in r.output
    whole, probes = _of(listings, root)
    assert whole == 1 and all(n <= 1 for n in probes), listings


@pytest.mark.parametrize("command", ["scan", "enhance", "tag"])
def test_a_missing_input_exits_2_with_the_listing_message_and_creates_nothing(tmp_path, command):
    out = tmp_path / "out"
    where = ["--out", str(out)] if command == "scan" else [str(out)]
    r = CliRunner().invoke(main, [command, str(tmp_path / "missing"), *where])
    assert r.exit_code == EXIT_USAGE, r.output
    assert f"cannot list {tmp_path / 'missing'}: no such file or directory" in r.output
    assert not out.exists() or not any(out.iterdir())


def test_a_refused_subtype_creates_no_output_folder(tmp_path):
    root = tmp_path / "in"
    _corpus(root, 1)
    out = tmp_path / "out"
    args = ["enhance", str(root), str(out), "--format", "ogg", "--subtype", "PCM_16", "--local"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == EXIT_USAGE, r.output
    assert (
        "subtype='PCM_16' cannot be stored as OGG (lossy Vorbis only): VORBIS (or keep)" in r.output
    )
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", ["enhance", "tag"])
def test_a_corrupt_manifest_is_a_usage_error(tmp_path: Path, command: str) -> None:
    """A file named .parquet that is not Parquet is the user's input error: exit 2, the file named, nothing
    written: not even the OUT folder (nor its missing parent) the output check and the lease created."""
    manifest = tmp_path / "manifest.parquet"
    manifest.write_bytes(b"not parquet at all\n" * 10)
    out = tmp_path / "new" / "out"
    result = CliRunner().invoke(main, [command, str(manifest), str(out), "--local"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "is not a readable Parquet manifest" in result.output
    assert str(manifest) in result.output
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"  # a folder that was there before stays
    existing.mkdir()
    result = CliRunner().invoke(main, [command, str(manifest), str(existing), "--local"])
    assert result.exit_code == EXIT_USAGE and existing.is_dir() and not any(existing.iterdir())
