"""`batchsep prepare`: training mixtures (speech + noise at drawn SNRs, augmented) from two folders."""

from __future__ import annotations

import sys
from typing import Any

import click

from batchsep.cli.common import (
    EPILOG,
    EXIT_OK,
    EXIT_SOME_FAILED,
    _check_output,
    _echo_errors,
    _fail_input,
    _fail_usage,
    _gb,
    _phase_bars,
    api_call,
)
from batchsep.cli.options import (
    COUNT,
    FLAG,
    MULTIPLE,
    REQUIRED,
    OptionRow,
    option_table,
    ray_options,
    shard_size_option,
)
from batchsep.errors import StorageError


def _augment_config(kinds: str | None, settings: tuple[str, ...]) -> Any:
    """prepare's --augment and --augment-set as an AugmentConfig (None without --augment)."""
    import yaml

    from batchsep.corpus.augment import AugmentConfig
    from batchsep.errors import ConfigError, ParameterError

    if not kinds:
        if settings:
            _fail_usage("--augment-set needs --augment KINDS")
        return None
    data: dict[str, Any] = {"kinds": [k.strip() for k in kinds.split(",") if k.strip()]}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            _fail_usage(f"--augment-set {item!r}: expected KEY=VALUE")
        data[key.strip()] = yaml.safe_load(value)
    try:
        return AugmentConfig.from_dict(data)
    except (ConfigError, ParameterError) as e:
        _fail_usage(f"--augment: {e}")


# fmt: off
PREPARE_OPTIONS: tuple[OptionRow, ...] = (
    ("--speech speech_uri", None, None, "Speech folder/prefix or scan manifest.", REQUIRED),
    ("--noise noise_uri", None, None, "Noise folder/prefix or scan manifest.", REQUIRED),
    ("--out out_uri", None, None, "Run folder (local or s3://).", REQUIRED),
    ("--train n_train", COUNT, 3000, "Mixtures in the train split."),
    ("--valid n_valid", COUNT, 300, "Mixtures in the valid split."),
    ("--test n_test", COUNT, 300, "Mixtures in the test split."),
    ("--snr-min", float, -5.0, "Lowest SNR (dB)."),
    ("--snr-max", float, 5.0, "Highest SNR (dB)."),
    ("--seed", int, 0, "Seed of every draw (the splits, and the mixtures unless --draw-seed)."),
    ("--draw-seed", int, None,
     "Seed of the per-mixture draws only: fresh mixtures of the same speaker/noise split as --seed's."),
    ("--max-seconds", click.FloatRange(min=0, min_open=True), None,
     "Crop longer utterances to this length at a random offset (default: whole utterances)."),
    ("--speaker-from", None, "parent",
     "Speaker of a speech file: parent | dir | top | file | re:REGEX (on the file name)."),
    ("--noise-class-from", None, "dir",
     "Noise class of a noise file: dir (its folder path) | parent | top | file | re:REGEX."),
    ("--noise-clip-from", None, "recording",
     "Noise recording (split unit): recording (UrbanSound8K fsID, else the file) | file | ..."),
    ("--holdout-noise-class holdout", None, None,
     "Noise class never used in training (repeatable), e.g. urbansound8k/gun_shot.", MULTIPLE),
    ("--valid-fraction", float, 0.2,
     "Share of the speakers, and of each noise class's recordings, kept for the valid split."),
    ("--test-fraction", float, 0.2,
     "Share of the speakers, and of each noise class's recordings, kept for the test split."),
    ("--recipe-only", None, None, "Store the recipes only (no audio; regenerated on the fly).", FLAG),
    ("--train-speech train_speech", None, None,
     "More speech used in the train split only (repeatable); the held-out speakers of --speech "
     "stay as they are.", MULTIPLE),
    ("--train-noise train_noise", None, None,
     "More noise used in the train split only (repeatable).", MULTIPLE),
    ("--augment augment", None, None,
     "Augmentations, comma-separated: speed, pitch, reverb, telephone, level, two-noise "
     "(default: none). Drawn per mixture of the train and valid splits, recorded in mixtures.parquet."),
    ("--augment-set augment_set", None, None,
     "An augmentation setting (repeatable): reverb_prob=0.5, rt60_max=0.8, telephone_prob=0.2, "
     "level_min_dbfs=-45, two_noise_prob=0.3, speeds=[0.9,1.0,1.1], splits=[train,valid], ...",
     {"multiple": True, "metavar": "KEY=VALUE"}),
)
# fmt: on


@click.command(epilog=EPILOG)
@option_table(*PREPARE_OPTIONS)
@shard_size_option("Mixtures", 16)
@ray_options()
def prepare(
    speech_uri: str,
    noise_uri: str,
    out_uri: str,
    n_train: int,
    n_valid: int,
    n_test: int,
    snr_min: float,
    snr_max: float,
    seed: int,
    draw_seed: int | None,
    max_seconds: float | None,
    speaker_from: str,
    noise_class_from: str,
    noise_clip_from: str,
    holdout: tuple[str, ...],
    valid_fraction: float,
    test_fraction: float,
    recipe_only: bool,
    train_speech: tuple[str, ...],
    train_noise: tuple[str, ...],
    augment: str | None,
    augment_set: tuple[str, ...],
    shard_size: int,
    workers: int | None,
    address: str | None,
    local: bool | None,
    show_errors: int,
) -> None:
    """Mix a speech corpus and a noise corpus into OUT: mixtures.parquet and 16 kHz audio.

    Inputs are scanned (unreadable files are reported and excluded; silent or too-short ones are
    skipped with a reason, see OUT/sources.parquet). Train, valid and test are disjoint by speaker
    and by noise recording; each mixture's draws (speech, noise, SNR uniform in the range, offsets)
    come from (seed, split, index), so the output is byte-identical on any number of workers.
    Audio: OUT/mixtures/<split>/{noisy,clean,noise}/<id>.flac (24-bit; noisy = clean + noise
    exactly). Re-running resumes and skips what is done.
    """
    import batchsep.api
    from batchsep.corpus.mixtures import MixtureConfig
    from batchsep.errors import ParameterError
    from batchsep.io import storage

    try:
        config = MixtureConfig(
            n_train=n_train, n_valid=n_valid, n_test=n_test, snr_min=snr_min, snr_max=snr_max,
            seed=seed, draw_seed=draw_seed, max_seconds=max_seconds, speaker_from=speaker_from,
            noise_class_from=noise_class_from, noise_clip_from=noise_clip_from,
            holdout_noise_classes=tuple(holdout), valid_fraction=valid_fraction,
            test_fraction=test_fraction,
        )  # fmt: skip
    except ParameterError as e:
        _fail_usage(str(e))
    aug = _augment_config(augment, augment_set)
    for uri in (speech_uri, noise_uri, *train_speech, *train_noise):
        try:
            if not storage.exists(uri):
                _fail_usage(f"input {uri}: no such file, folder or prefix")
        except StorageError as e:
            _fail_input(e)
    _check_output(out_uri)
    on_start, on_progress, close = _phase_bars()
    summary = api_call(
        lambda: batchsep.api.prepare(
            speech_uri,
            noise_uri,
            out_uri,
            config=config,
            recipe_only=recipe_only,
            workers=workers,
            address=address,
            local=local,
            shard_size=shard_size,
            on_start=on_start,
            on_progress=on_progress,
            train_speech_uris=list(train_speech),
            train_noise_uris=list(train_noise),
            augment=aug,
        ),
        usage=(ParameterError,),
        close=close,
    )
    splits = ", ".join(f"{k} {v}" for k, v in summary.mixtures_ok.items())
    click.echo(
        f"prepared {summary.mixtures} mixtures ({splits}), {summary.hours:.2f} h of audio, "
        f"{summary.mixtures_failed} failed; {summary.shards} shards "
        f"({summary.shards_skipped} already done); audio {_gb(summary.audio_bytes)}\n"
        f"inputs: {summary.inputs.get('speech', 0)} speech + {summary.inputs.get('noise', 0)} noise "
        f"files used, {len(summary.skipped_inputs)} skipped (silent/too short), "
        f"{len(summary.input_errors)} unreadable\nmixtures: {summary.mixtures_uri}"
    )
    failures = summary.input_errors + summary.errors
    _echo_errors(failures, show_errors)
    sys.exit(EXIT_SOME_FAILED if summary.failed else EXIT_OK)
