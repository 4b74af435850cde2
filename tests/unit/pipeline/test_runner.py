"""Where a job runs: the small-job rule (``batchsep.pipeline.runner``) on each stage's real work items,
and :func:`batchsep.distributed.runtime.placement` (no Ray is started here)."""

from __future__ import annotations

from typing import Any

import pytest

from batchsep.corpus.mixtures import MixtureConfig, Recipe
from batchsep.distributed import executors, runtime
from batchsep.errors import ParameterError
from batchsep.io.storage import FileEntry
from batchsep.pipeline import runner as rn
from batchsep.pipeline.enhance.worker import ShardTask
from batchsep.pipeline.evaluate.driver import EvalItem
from batchsep.pipeline.features.driver import StftFeatures
from batchsep.pipeline.features.worker import FeatureTask
from batchsep.pipeline.prepare.render import RenderTask


def _entry(i: int, size: int) -> FileEntry:
    return FileEntry(f"/in/{i}.wav", f"{i}.wav", size)


def _recipe(seconds: float) -> Recipe:
    return Recipe(
        "m", "train", 0, "/s.wav", "s.wav", "spk", "/n.wav", "n.wav", "cls", "clip", 16000, 0.0,
        0, 0, False, int(seconds * 16000),
    )  # fmt: skip


def test_job_size_reads_every_stage_s_work_items() -> None:
    """scan shards (listed files: size), evaluate shards ((items, metrics)), features tasks (rows),
    prepare render tasks (recipes): files and audio seconds; enhance's tasks are measured by size."""
    scan = [[_entry(i, 32_000) for i in range(3)], [_entry(3, 64_000)]]
    assert rn.job_size(scan) == rn.JobSize(4, 5.0)
    item = EvalItem("a.wav", "/n/a.wav", "/e/a.wav", None, (("duration_s", 2.5), ("model", "m")))
    assert rn.job_size([([item, item], ("si_sdr",))]) == rn.JobSize(2, 5.0)
    task = FeatureTask(
        "u", "train", [{"duration_s": 1.0}, {"duration_s": 2.0}], StftFeatures(), "k"
    )
    assert rn.job_size([task]) == rn.JobSize(2, 3.0)
    render = RenderTask("p", None, [_recipe(4.0)], MixtureConfig().max_peak)
    assert rn.job_size([render]) == rn.JobSize(1, pytest.approx(4.0))  # type: ignore[arg-type]


def test_an_item_of_unknown_shape_is_never_small() -> None:
    assert not rn.job_size([object()]).is_small()
    assert not rn.job_size([[{"no": "duration"}]]).is_small()
    assert rn.job_size([]).is_small()


@pytest.mark.parametrize(
    ("files", "seconds", "small"),
    [
        (1, 1.0, True),
        (rn.SMALL_JOB_FILES, rn.SMALL_JOB_SECONDS, True),
        (rn.SMALL_JOB_FILES + 1, 1.0, False),
        (1, rn.SMALL_JOB_SECONDS + 1, False),
    ],
)
def test_the_small_job_limits(files: int, seconds: float, small: bool) -> None:
    assert rn.JobSize(files, seconds).is_small() is small


class _Big:
    """A stand-in for RayRunner that records its calls (the Ray path itself is tested in
    tests/integration/test_placement.py)."""

    made = 0

    def __init__(self) -> None:
        type(self).made += 1
        self.calls = 0

    def map_unordered(self, fn: Any, items: Any) -> Any:
        self.calls += 1
        return iter([(i, ("big", fn(x))) for i, x in enumerate(items)])


def test_auto_runner_runs_small_work_here_and_makes_the_big_runner_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _Big.made = 0
    auto = rn.AutoRunner(_Big)
    small = [[_entry(0, 1000)]]
    assert list(auto.map_unordered(len, small)) == [(0, 1)]
    assert (
        "small job (1 file, 0.0 min of audio): running in this process" in capsys.readouterr().err
    )
    assert _Big.made == 0
    big = [[_entry(i, 1000) for i in range(rn.SMALL_JOB_FILES + 1)]]
    assert list(auto.map_unordered(len, big)) == [(0, ("big", rn.SMALL_JOB_FILES + 1))]
    # once the big runner exists (Ray started), later small calls use it too: Ray starts once
    assert list(auto.map_unordered(len, small)) == [(0, ("big", 1))]
    assert _Big.made == 1
    assert [here for _, here in auto.placement.calls] == [True, False, False]
    assert capsys.readouterr().err == ""  # announced once


def test_auto_runner_uses_a_cluster_already_running() -> None:
    auto = rn.AutoRunner(_Big, big_running=lambda: True)
    assert list(auto.map_unordered(len, [[_entry(0, 10)]])) == [(0, ("big", 1))]


def test_auto_executor_measures_enhance_inputs_by_size(tmp_path: Any) -> None:
    """enhance's shards: a few small inputs run here; bytes over the limit, more files than the limit, or
    an input it cannot stat go to the big executor."""
    small_file = tmp_path / "a.wav"
    small_file.write_bytes(b"x" * 32_000)  # one second by the rule
    big_file = tmp_path / "b.wav"
    big_file.write_bytes(b"x" * int(rn.SMALL_JOB_SECONDS * rn.BYTES_PER_SECOND + 1))

    def here(kwargs: Any, tasks: Any) -> Any:
        return iter([("here", t.shard) for t in tasks])

    def big(kwargs: Any, tasks: Any) -> Any:
        return iter([("big", t.shard) for t in tasks])

    def task(shard: int, *paths: Any) -> ShardTask:
        return ShardTask(shard, tuple((str(p), p.name, "/out/" + p.name) for p in paths))

    assert list(rn.AutoExecutor(here, lambda: big)({}, [task(0, small_file)])) == [("here", 0)]
    assert list(rn.AutoExecutor(here, lambda: big)({}, [task(0, big_file)])) == [("big", 0)]
    many = [task(i, small_file) for i in range(rn.SMALL_JOB_FILES + 1)]
    assert {w for w, _ in rn.AutoExecutor(here, lambda: big)({}, many)} == {"big"}
    gone = [task(0, tmp_path / "gone.wav")]
    assert list(rn.AutoExecutor(here, lambda: big)({}, gone)) == [("big", 0)]


@pytest.mark.parametrize(
    ("kwargs", "env", "where"),
    [
        ({}, {}, "auto"),
        ({"local": True}, {}, "here"),
        ({"local": False}, {}, "ray"),
        ({"address": "auto"}, {}, "ray"),
        ({}, {"RAY_ADDRESS": "127.0.0.1:6379"}, "ray"),
        ({"workers": 2}, {}, "ray"),
        ({"workers": 1}, {}, "auto"),
        ({"local": True, "workers": 4}, {}, "here"),
        ({}, {"BATCHSEP_PLACEMENT": "local"}, "here"),
        ({}, {"BATCHSEP_PLACEMENT": "ray"}, "ray"),
        ({"local": True}, {"BATCHSEP_PLACEMENT": "ray"}, "here"),  # the option wins
    ],
)
def test_placement_rule(
    kwargs: dict[str, Any], env: dict[str, str], where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RAY_ADDRESS", "BATCHSEP_PLACEMENT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(runtime, "ray_running", lambda: False)
    assert runtime.placement(**kwargs) == where


def test_placement_refuses_an_unknown_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSEP_PLACEMENT", "cluster")
    with pytest.raises(
        ParameterError, match="BATCHSEP_PLACEMENT='cluster' must be auto, local or ray"
    ):
        runtime.placement()


def test_make_runner_by_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("BATCHSEP_PLACEMENT", raising=False)
    monkeypatch.setattr(runtime, "ray_running", lambda: False)
    assert isinstance(runtime.make_runner(local=True), rn.SerialRunner)
    assert isinstance(runtime.make_runner(local=False), runtime.RayRunner)
    assert isinstance(runtime.make_runner(), rn.AutoRunner)
    assert isinstance(runtime.make_runner(workers=3), runtime.RayRunner)
    assert isinstance(executors.enhance_executor(), rn.AutoExecutor)
