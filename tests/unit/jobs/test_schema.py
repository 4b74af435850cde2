"""The job-spec schema is pinned: a changed ``api`` signature cannot change the spec format unseen.

The spec's stages and parameters are reflected from :mod:`batchsep.api` (:func:`batchsep.jobs.stages.
spec_schema`). ``jobspec_schema.txt`` holds the schema as released; a difference fails here. After a
deliberate change, regenerate it (``BATCHSEP_UPDATE_SCHEMA=1 pytest tests/unit/jobs/test_schema.py``)
and say in CHANGELOG.md and jobs/README.md what changed for spec authors.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchsep.jobs.stages import spec_schema

PINNED = Path(__file__).with_name("jobspec_schema.txt")


def schema_lines() -> list[str]:
    """``stage.parameter<TAB>type = default`` per line, sorted."""
    return sorted(
        f"{stage}.{key}\t{value}"
        for stage, params in spec_schema().items()
        for key, value in params.items()
    )


def test_jobspec_schema_is_pinned() -> None:
    lines = schema_lines()
    if os.environ.get("BATCHSEP_UPDATE_SCHEMA"):
        PINNED.write_text("\n".join(lines) + "\n")
    pinned = PINNED.read_text().splitlines()
    added = sorted(set(lines) - set(pinned))
    removed = sorted(set(pinned) - set(lines))
    assert not added and not removed, (
        "the job-spec schema changed (a batchsep.api signature): "
        f"new or changed {added}; gone or changed {removed}. If deliberate, regenerate "
        f"{PINNED.name} (BATCHSEP_UPDATE_SCHEMA=1) and note it for spec authors."
    )


def test_every_stage_is_in_the_schema() -> None:
    stages = {line.split(".", 1)[0] for line in PINNED.read_text().splitlines()}
    assert {
        "scan",
        "prepare",
        "features",
        "train",
        "enhance",
        "tag",
        "evaluate",
        "report",
    } <= stages
