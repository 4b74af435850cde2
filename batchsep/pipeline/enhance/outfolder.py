"""An enhance output folder: which inputs it takes, what its outputs are called, its commit record
(``results/part-*.parquet`` and compacted ``results/results-*.parquet``) and the settings its outputs were made with (``job.json``).

A re-run resumes from the commit record: files with a committed row are skipped, unless their output has gone
missing or their input changed since (size or modification time): then their row is removed and they are done
again; with ``--retry-failed`` also those that failed; and only with the same settings. The rows of inputs no
longer there are kept (``--prune-missing``: removed, with their outputs) and not counted.

Each run writes its parts as ``part-<run id>-NNNNN.parquet`` (``part-NNNNN.parquet`` from runs before run ids),
so parts of two runs never share a name. Should the record hold more than one row of a file (two runs at once
before leases, a hand edit, a compaction killed before it deleted its sources), the newest is the file's
row (:func:`read_record`) and a run removes the others. The resume itself plans on a compact index of the
record (:mod:`batchsep.pipeline.enhance.record`, :mod:`batchsep.pipeline.enhance.plan`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from batchsep.errors import ParameterError
from batchsep.io import parquet, schemas, storage
from batchsep.io.storage import FileEntry
from batchsep.pipeline.common import jobinfo
from batchsep.pipeline.enhance import record
from batchsep.pipeline.enhance.record import RESULTS_DIR
from batchsep.pipeline.scan.driver import InputFilter, input_listing, is_manifest


def enhance_inputs(
    in_uri: str, out_uri: str, where: InputFilter | None = None
) -> tuple[pa.Table, list[str]]:
    """Audio files to enhance into ``out_uri`` (a :data:`~batchsep.pipeline.scan.driver.LISTING` table sorted by
    relative path): those under the folder ``in_uri``, or those a manifest ``in_uri`` names (a scan's
    ``manifest.parquet``; nothing is listed then), filtered by ``where``; and the relative paths of the files
    skipped as not audio (by name).

    An output folder inside the input folder is left out of the listing (a re-run must not enhance its own
    outputs); the input folder itself as output is refused (outputs would replace their inputs).

    Raises
    ------
    StorageError
        Input missing or unlistable.
    ParameterError
        ``out_uri`` is ``in_uri``; a bad manifest or filter (see :func:`~batchsep.pipeline.scan.driver.input_listing`).
    """
    src, dst = storage.resolve_links(in_uri), storage.resolve_links(out_uri)  # a link is its target
    if src == dst:
        raise ParameterError(
            f"OUT {out_uri} is the input folder: outputs would replace their inputs; give another folder"
        )
    listing, non_audio = input_listing(in_uri, where)
    if is_manifest(in_uri):
        root = _manifest_root(listing)
        if root is not None and root == dst:
            raise ParameterError(
                f"OUT {out_uri} is the folder of the manifest's inputs: outputs would replace their inputs; "
                "give another folder"
            )
        return listing, non_audio
    inside = src.rstrip("/") + "/"
    if dst.startswith(inside):
        out_rel = dst[len(inside) :] + "/"
        listing = listing.filter(pc.invert(pc.starts_with(listing.column("rel_path"), out_rel)))
        non_audio = [r for r in non_audio if not r.startswith(out_rel)]
    return listing, non_audio


def _manifest_root(listing: pa.Table) -> str | None:
    """The folder a manifest's first input lies in relative to (its URI less its relative path)."""
    if listing.num_rows == 0:
        return None
    uri, rel = listing.column("uri")[0].as_py(), listing.column("rel_path")[0].as_py()
    if not uri.endswith(rel):
        return None
    return storage.resolve_links(uri[: len(uri) - len(rel)].rstrip("/") or "/")


SETTINGS_KEYS = ("model_sha256", "emotion_sha256", "options", "input_level_db_used")
"""What an enhance run's outputs depend on: a re-run that resumes must use the same (job.json's spec). Models
are compared by checksum: the same weights by another URI (``default`` or its folder) are the same model."""


SETTING_OPTIONS = {
    "model": "--model",
    "model_sha256": "--model",
    "emotion": "--emotion/--no-emotion, --emotion-model",
    "emotion_sha256": "--emotion/--no-emotion, --emotion-model",
    "input_level_db_used": "--input-level",
    "options.fmt": "--format",
    "options.out_sr": "--sr",
    "options.subtype": "--subtype",
    "options.multichannel": "--multichannel",
    "options.beamformer": "--beamformer",
    "options.beam_forgetting": "--beam-forgetting",
    "options.beam_refine": "--beam-refine",
    "options.beam_noise_power": "--beam-noise-power",
    "options.beam_mask": "--beam-mask",
    "options.beam_postmask": "--beam-postmask/--no-beam-postmask",
}
"""The ``batchsep enhance`` option behind each compared setting (named in the refusal)."""


def check_same_settings(out_uri: str, spec: Mapping[str, Any]) -> None:
    """Refuse to resume into ``out_uri`` with other settings than the run that committed its results
    (outputs would mix two settings, and job.json would describe only the last). Keys a run recorded
    before they existed are not compared."""
    before = jobinfo.read_job_json(out_uri).get("stages", {}).get("enhance", {}).get("spec")
    if not before:
        return
    changed = []
    keys = SETTINGS_KEYS if "model_sha256" in before else ("model", "emotion", *SETTINGS_KEYS)
    for key in keys:
        old, new = before.get(key), spec.get(key)
        if key not in before or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed += [
                _change(f"{key}.{k}", old.get(k), new.get(k))
                for k in sorted(old.keys() & new.keys())
                if old.get(k) != new.get(k) and k != "input_level_db"  # compared as the level used
            ]
        else:
            changed.append(_change(key, old, new))
    if changed:
        raise ParameterError(
            f"{out_uri} holds results made with other settings ({'; '.join(changed)}): re-run with the "
            "same settings to resume, --overwrite to start over, or give another OUT"
        )


def _change(key: str, old: Any, new: Any) -> str:
    option = SETTING_OPTIONS.get(key)
    return f"{key}{f' ({option})' if option else ''}: {old!r} -> {new!r}"


def discard_results(out_uri: str) -> None:
    """Start the folder over (``--overwrite``): delete the outputs its committed rows name under it, then
    the rows (an interrupted discard leaves rows whose output is gone, which a re-run does again)."""
    results_uri = storage.join(out_uri, RESULTS_DIR)
    if not storage.exists(results_uri):
        return
    newest, superseded = record.read_index(
        out_uri
    )  # superseded rows too: their outputs may have other names
    for rows in (
        newest,
        superseded,
    ):  # only under this folder: a copied folder's rows name the original's
        record.delete_outputs(
            out_uri, rows.filter(pc.equal(rows.column("status"), schemas.STATUS_OK))
        )
    storage.delete_many(e.uri for e in storage.list_files(results_uri))


def note_renamed(rows: list[dict[str, Any]], out_rel: Mapping[str, str], fmt: str) -> None:
    """Warn in the rows of files whose output name keeps the input suffix (see :func:`output_rel_paths`)."""
    for r in rows:
        rel = r["rel_path"]
        if (
            r["status"] == schemas.STATUS_OK
            and out_rel[rel] != os.path.splitext(rel)[0] + "." + fmt
        ):
            note = f"output named {out_rel[rel]}: another input has the same name apart from its suffix"
            r["warning"] = f"{r['warning']}; {note}" if r.get("warning") else note


def output_rel_paths(rel_paths: Sequence[str], fmt: str) -> dict[str, str]:
    """Output path of every input: same relative path, suffix ``.fmt``; no two inputs share an output.

    Inputs that would collide (``a.wav`` and ``a.flac``) keep their suffix (``a.wav.wav``, ``a.flac.wav``).
    Should such a name be another input's own (an input ``a.wav.wav``), that input keeps it and the other
    gets a number (``a.wav~2.wav``).
    """

    def candidate(rel: str, level: int) -> str:
        if level == 0:
            return os.path.splitext(rel)[0] + "." + fmt
        return f"{rel}.{fmt}" if level == 1 else f"{rel}~{level}.{fmt}"

    levels = dict.fromkeys(rel_paths, 0)
    while True:
        out = {r: candidate(r, k) for r, k in levels.items()}
        groups: dict[str, list[str]] = {}
        for r, o in out.items():
            groups.setdefault(o, []).append(r)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            return out
        for group in clashes:
            plain = [r for r in group if levels[r] == 0]
            for r in group:  # a lone input at its plain name keeps it
                if not (len(plain) == 1 and r == plain[0]):
                    levels[r] += 1


PART_KEY = "_part"
"""Key of a row read by :func:`read_record`: the URI of the results part that holds it."""
_RANK_KEY = "_rank"


@dataclass
class CommitRecord:
    """The commit record of an output folder as read: one row per file, the newest, and the older rows
    of files that have more than one (two runs into one folder before leases, a hand edit)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    superseded: list[dict[str, Any]] = field(default_factory=list)


def _rank(row: dict[str, Any], part_order: int, index: int) -> tuple[Any, ...]:
    """Which of two rows of a file is newer: the later ``committed_at``; rows without one (written
    before it existed) are older than any with one and, among themselves, the later part by name
    (parts were numbered in commit order) and the later row of a part wins."""
    at = row.get("committed_at")
    return (at is not None, at.timestamp() if at is not None else 0.0, part_order, index)


def read_record(out_uri: str) -> CommitRecord:
    """Read ``out_uri``'s results parts, the newest row of each file winning (see :func:`_rank`)."""
    newest: dict[str, dict[str, Any]] = {}
    record = CommitRecord()
    parts = parquet.read_part_tables(storage.join(out_uri, RESULTS_DIR))
    for order, (uri, table) in enumerate(parts):
        for i, row in enumerate(table.to_pylist()):
            row[PART_KEY], row[_RANK_KEY] = uri, _rank(row, order, i)
            other = newest.get(row["rel_path"])
            if other is None:
                newest[row["rel_path"]] = row
            elif row[_RANK_KEY] > other[_RANK_KEY]:
                record.superseded.append(other)
                newest[row["rel_path"]] = row
            else:
                record.superseded.append(row)
    record.rows = sorted(newest.values(), key=lambda r: r[_RANK_KEY])
    return record


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without the keys :func:`read_record` adds."""
    return {k: v for k, v in row.items() if k not in (PART_KEY, _RANK_KEY)}


def committed_rows(out_uri: str) -> list[dict[str, Any]]:
    """The committed rows of ``out_uri``: one per file, the newest (see :func:`read_record`)."""
    return [public_row(r) for r in read_record(out_uri).rows]


def stamp_rows(
    rows: list[dict[str, Any]], run_id: str, inputs: Mapping[str, FileEntry]
) -> list[dict[str, Any]]:
    """Add the commit stamp (``run_id``, ``committed_at``) and the identity of each row's input as it
    was listed (``input_size``, ``input_mtime_ns``) to rows about to be committed."""
    now = datetime.now(UTC)
    for r in rows:
        entry = inputs.get(r["rel_path"])
        r["run_id"], r["committed_at"] = run_id, now
        if entry is not None:
            r["input_size"] = entry.size if entry.size >= 0 else None
            r["input_mtime_ns"] = entry.mtime_ns
    return rows
