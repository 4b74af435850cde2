"""An enhance output folder: which inputs it takes, what its outputs are called, its commit record
(``results/part-*.parquet``) and the settings its outputs were made with (``job.json``).

A re-run resumes from the commit record: files with a committed row are skipped, unless their output has gone
missing (then their row is removed and they are done again) or, with ``--retry-failed``, they failed; and only
with the same settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

from batchsep.errors import ParameterError
from batchsep.io import parquet, schemas, storage
from batchsep.io.storage import FileEntry
from batchsep.pipeline import jobinfo
from batchsep.pipeline.scan import list_audio

RESULTS_DIR = "results"


def enhance_inputs(in_uri: str, out_uri: str) -> tuple[list[FileEntry], int]:
    """Audio files under ``in_uri`` to enhance into ``out_uri``, and the number of non-audio files skipped.

    An output folder inside the input folder is left out of the listing (a re-run must not enhance its own
    outputs); the input folder itself as output is refused (outputs would replace their inputs).

    Raises
    ------
    StorageError
        Input missing or unlistable.
    ParameterError
        ``out_uri`` is ``in_uri``.
    """
    src, dst = storage.resolve_links(in_uri), storage.resolve_links(out_uri)  # a link is its target
    if src == dst:
        raise ParameterError(
            f"OUT {out_uri} is the input folder: outputs would replace their inputs; give another folder"
        )
    entries, non_audio = list_audio(in_uri)
    inside = src.rstrip("/") + "/"
    if dst.startswith(inside):
        out_rel = dst[len(inside) :] + "/"
        entries = [e for e in entries if not e.rel_path.startswith(out_rel)]
    return entries, non_audio


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


def forget_missing_outputs(
    out_uri: str, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Committed rows whose output file still exists, and how many did not: those rows are removed from
    their results part (see :func:`forget_rows`) so the files are enhanced again."""
    present = {storage.normalize(e.uri) for e in storage.list_files(out_uri)}
    return forget_rows(
        out_uri,
        rows,
        lambda r: (
            r["status"] == schemas.STATUS_OK
            and bool(r.get("output_uri"))
            and storage.normalize(r["output_uri"]) not in present
        ),
    )


def forget_failed(
    out_uri: str, rows: list[dict[str, Any]], inputs: Set[str]
) -> tuple[list[dict[str, Any]], int]:
    """The committed rows kept, and how many failed rows were removed from their results part (see
    :func:`forget_rows`) so their files are tried again (``--retry-failed``): those of files still among
    ``inputs`` (relative paths); the row of an input that is gone stays, as its record."""
    return forget_rows(
        out_uri, rows, lambda r: r["status"] != schemas.STATUS_OK and r["rel_path"] in inputs
    )


def discard_results(out_uri: str) -> None:
    """Start the folder over (``--overwrite``): delete the outputs its committed rows name under it, then
    the rows (an interrupted discard leaves rows whose output is gone, which a re-run does again)."""
    results_uri = storage.join(out_uri, RESULTS_DIR)
    if not storage.exists(results_uri):
        return
    inside = storage.normalize(out_uri) + "/"
    # only under this folder: the rows of a copied folder name the outputs of the original
    storage.delete_many(
        r["output_uri"]
        for r in committed_rows(out_uri)
        if r["status"] == schemas.STATUS_OK
        and r.get("output_uri")
        and storage.normalize(r["output_uri"]).startswith(inside)
    )
    storage.delete_many(e.uri for e in storage.list_files(results_uri))


def forget_rows(
    out_uri: str, rows: list[dict[str, Any]], forget: Callable[[dict[str, Any]], bool]
) -> tuple[list[dict[str, Any]], int]:
    """Remove the committed ``rows`` for which ``forget(row)`` holds from their results parts (each part
    rewritten atomically, deleted when empty): the rows kept, and how many were removed. The files of the
    removed rows are no longer done, so a run does them again, each once."""
    lost = [r for r in rows if forget(r)]
    if not lost:
        return rows, 0
    lost_keys = {(int(r["shard"]), r["rel_path"]) for r in lost}
    results_uri = storage.join(out_uri, RESULTS_DIR)
    for shard in sorted({k[0] for k in lost_keys}):
        kept = [
            r for r in rows if int(r["shard"]) == shard and (shard, r["rel_path"]) not in lost_keys
        ]
        part = parquet.part_uri(results_uri, shard)
        if kept:
            parquet.write_table(part, schemas.table_from_rows(kept, schemas.ENHANCE_RESULTS))
        else:
            storage.delete(part)
    return [r for r in rows if (int(r["shard"]), r["rel_path"]) not in lost_keys], len(lost)


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


def committed_rows(out_uri: str) -> list[dict[str, Any]]:
    table = parquet.read_parts(storage.join(out_uri, RESULTS_DIR))
    return [] if table is None else table.to_pylist()
