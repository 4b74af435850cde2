"""The totals of an enhance run (:class:`EnhanceSummary`), returned by
:func:`batchsep.pipeline.enhance.driver.enhance`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchsep.io import schemas


@dataclass
class EnhanceSummary:
    """Totals over every committed results row of the output folder (this run and earlier ones)."""

    out_uri: str
    files_ok: int = 0
    files_failed: int = 0
    files_skipped: int = 0
    hours: float = 0.0
    processing_s: float = 0.0
    wall_s: float = 0.0
    hours_run: float = 0.0
    """Hours of audio enhanced by this run (``hours`` also counts files done by earlier runs)."""
    files_run: int = 0
    """Files this run committed a row for (ok or failed)."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    non_audio_skipped: int = 0
    """Files under the input that are not audio (by name), left alone."""
    skipped_names: list[str] = field(default_factory=list)
    """Relative paths of the inputs skipped as not audio (by name); all of them are in job.json too."""
    outputs_missing: int = 0
    """Files committed by an earlier run whose output had gone missing: enhanced again by this run."""
    failed_retried: int = 0
    """Files whose committed row said they failed, tried again by this run (``retry_failed``)."""
    input_level_db: float | None = None
    """The level (dBFS) the model saw each window at (None: the raw level, or no enhancement model)."""
    inputs_changed: int = 0
    """Files whose input changed (size or modification time) since their row: enhanced again."""
    inputs_gone: int = 0
    """Rows of inputs no longer present: not counted in the totals; kept in the record, or removed with
    their outputs when ``inputs_gone_pruned``."""
    inputs_gone_pruned: bool = False
    rows_repaired: int = 0
    """Older duplicate rows removed from the commit record (each file keeps its newest row)."""
    run_id: str = ""
    """This run's id (in its rows and its results part names)."""

    def count(self, rows: list[dict[str, Any]]) -> None:
        """Add committed results rows to the totals."""
        for r in rows:
            if r["status"] == schemas.STATUS_OK:
                self.files_ok += 1
                self.hours += float(r["duration_s"] or 0.0) / 3600.0
                self.processing_s += float(r["t_total_s"] or 0.0)
            else:
                self.files_failed += 1
                self.errors.append((r["rel_path"], r["error"]))

    @property
    def files(self) -> int:
        return self.files_ok + self.files_failed

    @property
    def x_real_time(self) -> float:
        """This run's audio over its wall time (start-up of Ray and of the models included)."""
        return self.hours_run * 3600.0 / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def x_real_time_per_worker(self) -> float:
        """Audio over the time spent on the files (decode → model → write), summed over workers."""
        return self.hours * 3600.0 / self.processing_s if self.processing_s > 0 else float("nan")
