"""The scan stage: list a URI prefix and describe every audio file in ``manifest.parquet``.

A bad file never stops the scan: it becomes a row with ``status="error"`` and a readable ``error``.
Rows are sorted by relative path, so the manifest is the same whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, overload

import pyarrow as pa
import pyarrow.compute as pc

from batchsep.errors import AudioDecodeError, ParameterError, StorageError
from batchsep.io import audio, parquet, schemas, storage
from batchsep.io.storage import FileEntry
from batchsep.pipeline.common import jobinfo, progress
from batchsep.pipeline.runner import Runner, SerialRunner
from batchsep.pipeline.scan.globs import glob_mask

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
    filtered_out: int = 0
    """Files scanned and left out of the manifest by a duration range or ``ok_only``."""

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
    where: InputFilter | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> ScanSummary:
    """Scan ``in_uri`` into ``out_uri/manifest.parquet``.

    The listing is kept as one Arrow table and the shards are formed from it as the runner asks for them;
    rows come back as one Arrow table per shard (no Python object per file is kept).

    Parameters
    ----------
    in_uri : str
        Folder or prefix (local, file://, s3://) to scan recursively, or a manifest to scan again.
    out_uri : str
        Run folder; receives ``manifest.parquet`` and ``job.json``.
    runner : Runner, optional
        Executes shards (default: in this process).
    shard_size : int
        Files per task.
    where : InputFilter, optional
        Which files the manifest keeps: ``glob`` picks the files scanned; the duration range and
        ``ok_only`` drop rows after the scan (counted in ``filtered_out``).
    on_start : callable(phase, n_files), optional
        Called once the input is listed (once), with the number of files to scan.
    on_progress : callable(files_done, seconds_of_audio_done), optional

    Raises
    ------
    StorageError
        If ``in_uri`` cannot be listed or ``out_uri`` cannot be written (checked before any work).
    """
    runner = runner or SerialRunner()
    where = where or InputFilter()
    listing, skipped = input_listing(in_uri, InputFilter(glob=where.glob))
    storage.check_writable(out_uri)
    if on_start is not None:
        on_start("scan", listing.num_rows)
    tables: list[pa.Table] = []
    for _, shard_rows in runner.map_unordered(scan_shard, ListingShards(listing, shard_size)):
        tables.append(schemas.table_from_rows(shard_rows, schemas.MANIFEST))
        seconds = sum(float(r.get("duration_s") or 0.0) for r in shard_rows)
        progress.report(on_progress, len(shard_rows), seconds, progress.failed_rows(shard_rows))
    del listing
    table = pa.concat_tables(tables) if tables else schemas.MANIFEST.empty_table()
    table = table.sort_by("rel_path")
    n_scanned = table.num_rows
    table = _keep(table, where)
    manifest_uri = storage.join(out_uri, MANIFEST_NAME)
    parquet.write_table(manifest_uri, table)
    summary = ScanSummary(
        manifest_uri=manifest_uri, skipped_non_audio=len(skipped), skipped_names=skipped,
        filtered_out=n_scanned - table.num_rows,
    )  # fmt: skip
    ok = pc.equal(table.column("status"), schemas.STATUS_OK)
    good, bad = table.filter(ok), table.filter(pc.invert(ok))
    summary.files_ok, summary.files_failed = good.num_rows, bad.num_rows
    summary.hours = float(pc.sum(good.column("duration_s")).as_py() or 0.0) / 3600.0
    summary.errors = [
        (str(r), str(e))
        for r, e in zip(
            bad.column("rel_path").to_pylist(), bad.column("error").to_pylist(), strict=True
        )
    ]
    spec = {"in_uri": in_uri, "out_uri": out_uri, "shard_size": shard_size}
    if where != InputFilter():
        spec["filter"] = {k: v for k, v in asdict(where).items() if v not in (None, False)}
    jobinfo.write_job_json(out_uri, "scan", spec, skipped=skipped)
    return summary


def _keep(table: pa.Table, where: InputFilter) -> pa.Table:
    """The manifest rows ``where``'s duration range and ``ok_only`` keep."""
    if where.ok_only:
        table = table.filter(pc.equal(table.column("status"), schemas.STATUS_OK))
    for bound, op in (
        (where.min_duration_s, pc.greater_equal),
        (where.max_duration_s, pc.less_equal),
    ):
        if bound is not None:
            table = table.filter(pc.fill_null(op(table.column("duration_s"), bound), False))
    return table


class ListingShards(Sequence[list[FileEntry]]):
    """The shards of ``shard_size`` files of a :data:`LISTING` table, each made when it is asked for."""

    def __init__(self, listing: pa.Table, shard_size: int) -> None:
        if shard_size < 1:
            raise ValueError(f"shard size={shard_size} must be >= 1")
        self.listing, self.size = listing, shard_size

    def __len__(self) -> int:
        return -(-self.listing.num_rows // self.size)

    @overload
    def __getitem__(self, i: int) -> list[FileEntry]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[list[FileEntry]]: ...
    def __getitem__(self, i: int | slice) -> list[FileEntry] | Sequence[list[FileEntry]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        rows = self.listing.slice(i * self.size, self.size).to_pylist()
        return [FileEntry(r["uri"], r["rel_path"], r["size"], r["mtime_ns"]) for r in rows]


LISTING = pa.schema(
    [
        ("uri", pa.string()),
        ("rel_path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
    ]
)
"""An input listing as one Arrow table (a few dozen bytes a file, no Python object per file): each file's
URI, its path relative to the input, its size (-1: unknown) and modification time (null: unknown)."""


@dataclass(frozen=True)
class InputFilter:
    """Which listed (or manifest) files a stage takes: a glob on the relative path, a duration range and
    ``ok_only`` (the last two need a scan manifest, which knows durations and decode status)."""

    glob: str | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    ok_only: bool = False

    @property
    def needs_manifest(self) -> bool:
        return self.ok_only or self.min_duration_s is not None or self.max_duration_s is not None


def listing_table(entries: Iterable[FileEntry], *, chunk: int = 8192) -> pa.Table:
    """``entries`` as a :data:`LISTING` table, built ``chunk`` entries at a time."""
    batches: list[pa.RecordBatch] = []
    cols: tuple[list[Any], ...] = ([], [], [], [])

    def flush() -> None:
        batches.append(pa.record_batch([pa.array(c, t.type) for c, t in zip(cols, LISTING, strict=True)],
                                       schema=LISTING))  # fmt: skip
        for c in cols:
            c.clear()

    for e in entries:
        cols[0].append(e.uri)
        cols[1].append(e.rel_path)
        cols[2].append(e.size)
        cols[3].append(e.mtime_ns)
        if len(cols[0]) >= chunk:
            flush()
    flush()
    return pa.Table.from_batches(batches, schema=LISTING).combine_chunks()


def is_manifest(uri: str) -> bool:
    """True when ``uri`` names a Parquet file (a scan's ``manifest.parquet``, or any with a ``uri``
    column): a list of inputs, not a folder of them."""
    return uri.lower().endswith(".parquet") and storage.is_file(uri)


def manifest_listing(uri: str, where: InputFilter | None = None) -> pa.Table:
    """The inputs a manifest names, as a :data:`LISTING` sorted by relative path, filtered by ``where``.

    ``rel_path`` is the manifest's own (a scan's), else each URI's path below the URIs' common folder;
    ``size`` is its ``bytes`` column when it has one (so a file changed since the scan is done again).

    Raises
    ------
    ParameterError
        Not Parquet, no ``uri`` column, a filter on a column the manifest lacks, or two rows of one
        relative path.
    StorageError
        The file cannot be read.
    """
    where = where or InputFilter()
    try:
        table = parquet.read_table(uri)
    except StorageError as e:
        if isinstance(e.__cause__, pa.ArrowInvalid):  # read, but not Parquet: the user's error
            raise ParameterError(f"{uri} is not a readable Parquet manifest: {e.__cause__}") from e
        raise
    names = set(table.column_names)
    if "uri" not in names:
        raise ParameterError(
            f"{uri} has no 'uri' column: give a scan's manifest.parquet or a Parquet file listing the inputs"
        )
    mask = pc.is_valid(table.column("uri"))
    if where.ok_only:
        _need(uri, names, "status", "--ok-only")
        mask = pc.and_(mask, pc.equal(table.column("status"), schemas.STATUS_OK))
    for bound, op in (
        (where.min_duration_s, pc.greater_equal),
        (where.max_duration_s, pc.less_equal),
    ):
        if bound is not None:
            _need(uri, names, "duration_s", "a duration range")
            mask = pc.and_(mask, pc.fill_null(op(table.column("duration_s"), bound), False))
    table = table.filter(mask)
    uris = table.column("uri")
    if "rel_path" in names:
        rel = table.column("rel_path")
    else:  # below the common folder of the URIs
        values = uris.to_pylist()
        root = posixpath.commonpath([posixpath.dirname(u) for u in values]) if values else ""
        rel = pa.array([u[len(root) :].lstrip("/") for u in values], pa.string())
    size = (
        pc.fill_null(pc.cast(table.column("bytes"), pa.int64()), -1)
        if "bytes" in names
        else pa.array([-1] * table.num_rows, pa.int64())
    )
    mtime = (
        pc.cast(table.column("mtime_ns"), pa.int64())
        if "mtime_ns" in names
        else pa.nulls(table.num_rows, pa.int64())
    )
    listing = pa.table([uris, rel, size, mtime], schema=LISTING)
    if where.glob:
        listing = listing.filter(glob_mask(listing.column("rel_path"), where.glob))
    listing = listing.sort_by("rel_path")
    rels = listing.column("rel_path")
    if listing.num_rows > 1:
        same = pc.equal(rels.slice(0, listing.num_rows - 1), rels.slice(1))
        if pc.any(same).as_py():
            dup = rels.filter(pa.concat_arrays([same.combine_chunks(), pa.array([False])]))[0]
            raise ParameterError(f"{uri} lists {dup.as_py()!r} twice (each input once, please)")
    return listing.combine_chunks()


def _need(uri: str, names: set[str], column: str, option: str) -> None:
    if column not in names:
        raise ParameterError(
            f"{option} needs a '{column}' column: {uri} has none (a scan manifest has)"
        )


def input_listing(in_uri: str, where: InputFilter | None = None) -> tuple[pa.Table, list[str]]:
    """The inputs of a stage as a :data:`LISTING` sorted by relative path, and the relative paths of the
    files skipped as not audio: a manifest's rows (:func:`manifest_listing`; nothing is listed), or the
    audio files under a folder or prefix (:func:`list_inputs`) filtered by ``where``'s glob.

    Raises
    ------
    ParameterError
        A filter that needs a manifest, given a folder.
    StorageError
        Input missing or unlistable.
    """
    where = where or InputFilter()
    if is_manifest(in_uri):
        return manifest_listing(in_uri, where), []
    if where.needs_manifest:
        raise ParameterError(
            f"{in_uri}: a duration range or --ok-only needs a scan manifest as input (batchsep scan, then "
            "give RUN/manifest.parquet)"
        )
    skipped: list[str] = []

    def audio_files() -> Iterable[FileEntry]:  # as listed: no list of entries is kept
        suffixes = tuple(audio.AUDIO_SUFFIXES)
        for e in storage.iter_files(in_uri):
            if e.rel_path.lower().endswith(suffixes):  # audio.is_audio_name, for 10^6 names
                yield e
            else:
                skipped.append(e.rel_path)

    listing = listing_table(audio_files()).sort_by("rel_path").combine_chunks()
    skipped.sort()
    if where.glob:
        listing = listing.filter(glob_mask(listing.column("rel_path"), where.glob))
    return listing, skipped
