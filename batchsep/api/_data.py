"""The api's data stages: scan, prepare and features (public as :mod:`batchsep.api`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchsep import api_params as _params
from batchsep.api_params import _check


def scan(
    in_uri: str,
    out_uri: str,
    *,
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    shard_size: int = 32,
    glob: str | None = None,
    min_duration_s: float | None = None,
    max_duration_s: float | None = None,
    ok_only: bool = False,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Scan ``in_uri`` into ``out_uri/manifest.parquet``.

    Sharded over Ray or run in this process (``local``: see the module's docstring).

    ``glob`` picks the files scanned (by relative path); ``min_duration_s``, ``max_duration_s`` and
    ``ok_only`` (decoded without error) pick the rows the manifest keeps.

    Input and output are checked before Ray starts, so a bad URI fails fast with a StorageError.
    ``on_start("scan", n_files)`` is called once the input is listed (once), then ``on_progress`` per shard.
    Returns a :class:`batchsep.pipeline.scan.driver.ScanSummary`.
    """
    _check("scan", workers=workers, shard_size=shard_size)
    from batchsep.distributed.runtime import make_runner
    from batchsep.pipeline.scan import driver as _scan

    runner = make_runner(workers=workers, address=address, local=local)
    where = _input_filter(glob, min_duration_s, max_duration_s, ok_only)
    return _scan.scan(
        in_uri, out_uri, runner=runner, shard_size=shard_size, where=where, on_start=on_start,
        on_progress=on_progress,
    )  # fmt: skip


def _input_filter(glob: str | None, lo: float | None, hi: float | None, ok_only: bool) -> Any:
    from batchsep.pipeline.scan.driver import InputFilter

    return InputFilter(glob, lo, hi, ok_only)


def prepare(
    speech_uri: str,
    noise_uri: str,
    out_uri: str,
    *,
    n_train: int | None = None,
    n_valid: int | None = None,
    n_test: int | None = None,
    snr_min: float | None = None,
    snr_max: float | None = None,
    seed: int | None = None,
    max_seconds: float | None = None,
    speaker_from: str | None = None,
    noise_class_from: str | None = None,
    noise_clip_from: str | None = None,
    holdout_noise_classes: list[str] | None = None,
    config: Any = None,
    recipe_only: bool = False,
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    shard_size: int = 16,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
    train_speech_uris: list[str] | None = None,
    train_noise_uris: list[str] | None = None,
    augment: Any = None,
) -> Any:
    """Mix a speech corpus and a noise corpus into ``out_uri`` (``mixtures.parquet`` + 24-bit FLAC).

    Defaults: 3000/300/300 mixtures, SNR uniform in -5..5 dB, seed 0, whole utterances, speaker = parent
    folder, noise class = folder path, noise recording = UrbanSound8K fsID (else the file). ``config``
    (a :class:`batchsep.corpus.mixtures.MixtureConfig` or its dict) sets every field; the other
    arguments, when given, override it. Splits are disjoint by speaker and by noise recording; the same
    inputs and seed give byte-identical outputs on any number of workers; re-running resumes.
    ``train_speech_uris``/``train_noise_uris`` add inputs to the train split only (the held-out
    speakers and recordings of the main inputs stay as they are); ``augment`` (an
    :class:`batchsep.corpus.augment.AugmentConfig`, its dict, or a list of kinds such as
    ``["speed", "reverb"]``) draws augmentations per mixture (default: none).
    Returns a :class:`batchsep.pipeline.prepare.driver.PrepareSummary`.
    """
    mixture = dict(
        n_train=n_train, n_valid=n_valid, n_test=n_test, snr_min=snr_min, snr_max=snr_max, seed=seed,
        max_seconds=max_seconds, speaker_from=speaker_from, noise_class_from=noise_class_from,
        noise_clip_from=noise_clip_from, holdout_noise_classes=holdout_noise_classes, config=config,
    )  # fmt: skip
    _check("prepare", workers=workers, shard_size=shard_size, augment=augment, **mixture)
    from batchsep.distributed.runtime import make_runner
    from batchsep.pipeline.prepare import driver as _prep

    return _prep.prepare(
        speech_uri, noise_uri, out_uri, config=_params.mixture_config(mixture),
        recipe_only=recipe_only, runner=make_runner(workers=workers, address=address, local=local),
        shard_size=shard_size, on_start=on_start, on_progress=on_progress,
        train_speech_uris=tuple(train_speech_uris or ()),
        train_noise_uris=tuple(train_noise_uris or ()), augment=_params.augment_config(augment),
    )  # fmt: skip


def features(
    run_uri: str,
    *,
    kind: str = "stft",
    noise_mag: bool = True,
    psa_target: bool = False,
    config: Any = None,
    out_uri: str | None = None,
    shard_mb: float = 128.0,
    compression: str = "zstd",
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Compute features of a run into ``<out_uri or run_uri/features>/<split>/part-NNNNN.parquet``.

    ``kind="stft"`` (a prepare run): magnitudes of noisy, clean and (``noise_mag``) noise, and
    (``psa_target``) the phase-sensitive target; ``kind="logmel"`` (a scan run): 80-mel log-power.
    ``config`` (a ``StftFeatures``/``LogMelFeatures`` or its dict) overrides ``kind`` and the flags. Shards already
    present with the same transform are skipped. Returns a
    :class:`batchsep.pipeline.features.driver.FeatureSummary`.
    """
    _check("features", workers=workers, shard_mb=shard_mb, compression=compression, kind=kind)
    from batchsep.distributed.runtime import make_runner
    from batchsep.pipeline.features import driver as _feat

    config = _params.feature_config(config, kind=kind, noise_mag=noise_mag, psa_target=psa_target)
    return _feat.features(
        run_uri, config=config, out_uri=out_uri, shard_mb=shard_mb, compression=compression,
        runner=make_runner(workers=workers, address=address, local=local), on_start=on_start,
        on_progress=on_progress,
    )  # fmt: skip
