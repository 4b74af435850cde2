"""The scan stage: list a URI prefix and describe every audio file in ``manifest.parquet``.

A bad file never stops the scan: it becomes a row with ``status="error"`` and a readable ``error``.
Rows are sorted by relative path, so the manifest is the same whatever the number of workers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchsep.errors import AudioDecodeError, StorageError
from batchsep.io import audio, parquet, schemas, storage
from batchsep.io.storage import FileEntry
from batchsep.pipeline.common import jobinfo, progress
from batchsep.pipeline.runner import Runner, SerialRunner, shards

MANIFEST_NAME = "manifest.parquet"

ScanRow = dict[str, Any]


@dataclass
class ScanSummary:
    """What a scan found: counts, hours of audio, where the manifest went."""

    manifest_uri: str
    files_ok: int = 0
    files_failed: int = 0
    skipped_non_audio: int = 0
    skipped_names: list[str] = field(default_factory=list)
    """Relative paths of the files skipped as not audio (by name); all of them are in job.json too."""
    hours: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def files(self) -> int:
        return self.files_ok + self.files_failed


def scan_file(entry: FileEntry) -> ScanRow:
    """Describe one file; any failure becomes an error row (never raises for bad input)."""
    row: ScanRow = {"uri": entry.uri, "rel_path": entry.rel_path, "status": schemas.STATUS_OK}
    try:
        data = storage.read_bytes(entry.uri)
        row["bytes"] = len(data)
        row["sha256"] = hashlib.sha256(data).hexdigest()
        info = audio.probe(data)
    except (StorageError, AudioDecodeError) as e:
        row.update(status=schemas.STATUS_ERROR, error=str(e))
        return row
    row.update(
        sr=info.sample_rate,
        channels=info.channels,
        frames=info.frames,
        duration_s=info.duration_s,
        format=info.format,
        subtype=info.subtype,
        peak=info.peak,
        rms_dbfs=info.rms_dbfs,
    )
    return row


def scan_shard(entries: list[FileEntry]) -> list[ScanRow]:
    """Scan one shard of files (the unit of work of a Ray task)."""
    return [scan_file(e) for e in entries]


def list_audio(in_uri: str) -> tuple[list[FileEntry], int]:
    """Audio files under ``in_uri`` and the number of non-audio files skipped (see :func:`list_inputs`)."""
    keep, skipped = list_inputs(in_uri)
    return keep, len(skipped)


def list_inputs(in_uri: str) -> tuple[list[FileEntry], list[str]]:
    """Audio files under ``in_uri`` (by name: :data:`~batchsep.io.audio.AUDIO_SUFFIXES`) and the relative
    paths of the other files, skipped as not audio.

    The temporaries of batchsep's own unfinished writes (an interrupted run into a folder now used as
    input) are neither: they are left out.

    Raises StorageError when ``in_uri`` does not exist or cannot be listed.
    """
    entries = [
        e
        for e in storage.list_files(in_uri)
        if not e.rel_path.rsplit("/", 1)[-1].startswith(storage.TMP_PREFIX)
    ]
    keep = [e for e in entries if audio.is_audio_name(e.rel_path)]
    return keep, sorted(e.rel_path for e in entries if not audio.is_audio_name(e.rel_path))


def scan(
    in_uri: str,
    out_uri: str,
    *,
    runner: Runner | None = None,
    shard_size: int = 32,
    on_progress: Callable[[int, float], None] | None = None,
) -> ScanSummary:
    """Scan ``in_uri`` into ``out_uri/manifest.parquet``.

    Parameters
    ----------
    in_uri : str
        Folder or prefix (local, file://, s3://) to scan recursively.
    out_uri : str
        Run folder; receives ``manifest.parquet`` and ``job.json``.
    runner : Runner, optional
        Executes shards (default: in this process).
    shard_size : int
        Files per task.
    on_progress : callable(files_done, seconds_of_audio_done), optional

    Raises
    ------
    StorageError
        If ``in_uri`` cannot be listed or ``out_uri`` cannot be written (checked before any work).
    """
    runner = runner or SerialRunner()
    entries, skipped = list_inputs(in_uri)
    storage.check_writable(out_uri)
    rows: list[ScanRow] = []
    for _, shard_rows in runner.map_unordered(scan_shard, shards(entries, shard_size)):
        rows.extend(shard_rows)
        seconds = sum(float(r.get("duration_s") or 0.0) for r in shard_rows)
        progress.report(on_progress, len(shard_rows), seconds, progress.failed_rows(shard_rows))
    rows.sort(key=lambda r: str(r["rel_path"]))
    manifest_uri = storage.join(out_uri, MANIFEST_NAME)
    parquet.write_table(manifest_uri, schemas.table_from_rows(rows, schemas.MANIFEST))
    summary = ScanSummary(
        manifest_uri=manifest_uri, skipped_non_audio=len(skipped), skipped_names=skipped
    )
    for r in rows:
        if r["status"] == schemas.STATUS_OK:
            summary.files_ok += 1
            summary.hours += float(r["duration_s"]) / 3600.0
        else:
            summary.files_failed += 1
            summary.errors.append((str(r["rel_path"]), str(r["error"])))
    spec = {"in_uri": in_uri, "out_uri": out_uri, "shard_size": shard_size}
    jobinfo.write_job_json(out_uri, "scan", spec, skipped=skipped)
    return summary
