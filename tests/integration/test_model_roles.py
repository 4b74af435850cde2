"""Models in the wrong role fail before any work; a worker that cannot start fails the job, once.

The shipped ``default`` is the enhancer (blstm), ``default-emotion`` the emotion model (emotion-stats):
given one for the other, the driver refuses (exit 2 from the CLI) before Ray starts and writes nothing.
A pool actor whose constructor raises anyway (a check only the worker can make) fails the Ray job with
its own message instead of being replaced again and again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import batchsep.api
from batchsep.cli.main import EXIT_USAGE, main
from batchsep.errors import BatchsepError, ParameterError
from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.outfolder import committed_rows
from batchsep.pipeline.enhance.worker import ShardTask

SR = 16000
EMOTION_AS_ENHANCER = (
    "model 'default-emotion' is the emotion model 'emotion-stats', not an enhancer (the shipped "
    "enhancer is 'default'; give an emotion model as the emotion model)"
)
ENHANCER_AS_EMOTION = (
    "emotion model 'default' is the enhancer 'blstm', not an emotion model (the shipped emotion "
    "model is 'default-emotion')"
)


def _corpus(root: Path, n: int = 2) -> Path:
    root.mkdir(parents=True)
    t = np.arange(SR) / SR
    for i in range(n):
        sf.write(root / f"f{i}.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    return root


def _nothing_written(out: Path) -> None:
    assert not (out / "results").exists()
    assert not (out / "job.json").exists()
    assert not list(out.rglob("*.wav"))


def _ray_started() -> bool:
    import ray

    return ray.is_initialized()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda i, o: batchsep.api.enhance(
                i, o, emotion=True, emotion_model="default", workers=1
            ),
            ENHANCER_AS_EMOTION,
        ),
        (
            lambda i, o: batchsep.api.tag(i, o, emotion_model="default", workers=1),
            ENHANCER_AS_EMOTION,
        ),
        (
            lambda i, o: batchsep.api.enhance(i, o, model="default-emotion", workers=1),
            EMOTION_AS_ENHANCER,
        ),
        (
            lambda i, o: batchsep.api.enhance(
                i, o, model="default-emotion", emotion=False, workers=1
            ),
            EMOTION_AS_ENHANCER,
        ),
    ],
    ids=["enhance-emotion-default", "tag-default", "enhance-model-default-emotion", "no-emotion"],
)
def test_api_refuses_a_model_in_the_wrong_role(tmp_path, call, message):
    root, out = _corpus(tmp_path / "in"), tmp_path / "out"
    ray_before = _ray_started()
    with pytest.raises(ParameterError) as info:
        call(str(root), str(out))
    assert str(info.value) == message
    _nothing_written(out)
    assert _ray_started() == ray_before, "the roles are checked before Ray starts"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enhance", "--emotion-model", "default", "--workers", "1"], ENHANCER_AS_EMOTION),
        (["tag", "--emotion-model", "default", "--workers", "1"], ENHANCER_AS_EMOTION),
        (["enhance", "--model", "default-emotion", "--workers", "1"], EMOTION_AS_ENHANCER),
        (
            ["enhance", "--model", "default-emotion", "--no-emotion", "--workers", "1"],
            EMOTION_AS_ENHANCER,
        ),
    ],
    ids=["enhance-emotion-default", "tag-default", "enhance-model-default-emotion", "no-emotion"],
)
def test_cli_exits_2_on_a_model_in_the_wrong_role(tmp_path, args, message):
    root, out = _corpus(tmp_path / "in"), tmp_path / "out"
    ray_before = _ray_started()
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, [args[0], str(root), str(out), *args[1:]])
    assert r.exit_code == EXIT_USAGE, r.output
    assert f"Error: {message}\n" in r.output, r.output
    assert "Traceback" not in r.output
    _nothing_written(out)
    assert _ray_started() == ray_before, "the roles are checked before Ray starts"
    assert time.perf_counter() - t0 < 60


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_worker_that_cannot_start_fails_the_job_with_its_error(tmp_path, ray_local):
    """A model that loads in the driver but whose worker cannot start (here: a CUDA device the worker
    does not see): the job fails with the worker's own message, fast, and commits nothing."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA (the worker must fail to start)")
    from batchsep.distributed.data import RayDataExecutor, WorkerInitError

    root, out = _corpus(tmp_path / "in", 4), tmp_path / "out"
    t0 = time.perf_counter()
    with pytest.raises(WorkerInitError) as info:
        enhance(
            str(root), str(out), model="default", device="cuda", shard_size=1,
            executor=RayDataExecutor(workers=2),
        )  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert str(info.value) == (
        "enhance worker could not start: ParameterError: device='cuda' requested but no CUDA "
        "device is visible to this worker"
    )
    # a fatal error for the CLI (exit 3), not a usage error: the CLI maps BatchsepError to exit 3
    assert isinstance(info.value, BatchsepError) and not isinstance(info.value, ParameterError)
    assert not committed_rows(str(out))
    assert not list(out.glob("results/part-*"))
    assert not list(out.rglob("*.wav"))
    assert elapsed < 120, f"took {elapsed:.0f} s: actors restarted?"


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_executor_fails_on_a_constructor_error_without_restarts(tmp_path, ray_local):
    """The executor on its own (no driver check): the shipped enhancer as the emotion model."""
    from batchsep.distributed.data import RayDataExecutor, WorkerInitError

    root = _corpus(tmp_path / "in", 3)
    tasks = [
        ShardTask(i, ((str(root / f"f{i}.wav"), f"f{i}.wav", str(tmp_path / "out" / f"f{i}.wav")),))
        for i in range(3)
    ]
    kwargs: dict[str, Any] = {"model_uri": None, "options": {}, "emotion_uri": "default"}
    t0 = time.perf_counter()
    yielded = []
    with pytest.raises(WorkerInitError, match="'blstm' is not an emotion model") as info:
        for shard, _rows in RayDataExecutor(workers=2)(kwargs, tasks):
            yielded.append(shard)
    assert str(info.value) == (
        "enhance worker could not start: ParameterError: default: 'blstm' is not an emotion model"
    )
    assert yielded == []
    assert time.perf_counter() - t0 < 120
