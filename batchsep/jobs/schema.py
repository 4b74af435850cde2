"""What a job spec may contain: its sections and keys, the parsed spec's types, the error listing its problems.

:func:`batchsep.jobs.spec.parse_spec` builds these from YAML; :mod:`batchsep.jobs.references`,
:mod:`batchsep.jobs.stages` and :mod:`batchsep.jobs.run` take them. The parameters of each stage are those of
the :mod:`batchsep.api` function it names (:func:`batchsep.jobs.stages.spec_schema`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchsep.config import Config, register_config
from batchsep.errors import ConfigError

SPEC_KEYS = ("name", "description", "stages", "ray", "env")
STAGE_KEYS = ("stage", "name", "params")
RAY_SET_PARAMS = ("address",)
"""Stage parameters set once for the whole job (``ray.address`` or ``--address``), never per stage."""


@register_config("job_ray")
@dataclass(frozen=True)
class RaySection(Config):
    """The spec's ``ray:`` section.

    Parameters
    ----------
    address : str, optional
        Where stages run: ``None`` (``$RAY_ADDRESS`` inside a Ray Job, else an embedded local Ray),
        ``"auto"``, ``"local"``, ``"HOST:PORT"`` (GCS) or ``"ray://HOST:10001"``. Not the dashboard URL
        (``http://HEAD:8265``), which is for ``batchsep submit``.
    workers : int, optional
        Default ``workers`` of every stage that takes one (embedded Ray CPUs / tasks in flight).
    """

    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"ray.workers={self.workers} must be >= 1")
        if self.address is not None and self.address.startswith(("http://", "https://")):
            raise ConfigError(
                f"ray.address={self.address!r} is a dashboard (Jobs API) URL; use it with "
                "`batchsep submit --address`, and here a Ray address (auto, HOST:PORT, ray://HOST:10001)"
            )


@dataclass(frozen=True)
class StageSpec:
    """One validated stage: ``stage`` is the ``batchsep.api`` function, ``params`` its resolved kwargs."""

    index: int
    name: str
    stage: str
    params: dict[str, Any]
    raw_params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``stages[i] (stage)`` or ``stages[i] 'name' (stage)``, as used in messages."""
        named = f" {self.name!r}" if self.name != self.stage else ""
        return f"stages[{self.index}]{named} ({self.stage})"


@dataclass(frozen=True)
class JobSpec:
    """A validated job spec (see the module docstring for the YAML form)."""

    name: str
    stages: tuple[StageSpec, ...]
    ray: RaySection = field(default_factory=RaySection)
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The spec as written (references unresolved); :func:`parse_spec` of it gives this spec back."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["stages"] = [
            {
                "stage": s.stage,
                **({"name": s.name} if s.name != s.stage else {}),
                "params": s.raw_params,
            }
            for s in self.stages
        ]
        ray = {k: v for k, v in self.ray.to_dict().items() if k != "type" and v is not None}
        if ray:
            out["ray"] = ray
        if self.env:
            out["env"] = dict(self.env)
        return out


class SpecError(ConfigError):
    """An invalid job spec: ``problems`` holds every problem found, one message each.

    The message is the problem itself when there is one, else ``N problems:`` and one indented line per
    problem; ``source`` (the spec's file), when known, starts it.
    """

    def __init__(self, problems: Sequence[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = prefix + self.problems[0]
        else:
            lines = "".join(f"\n  {p}" for p in self.problems)
            message = f"{prefix}{len(self.problems)} problems:{lines}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.source))


CLI_OPTION_KEYS = {
    "format": "fmt",
    "input_level": "input_level_db",
    "overwrite": "resume: false",
    "no_resume": "resume: false",
    "out": "out_uri",
    "speech": "speech_uri",
    "noise": "noise_uri",
    "features": "run_uri",
    "train": "n_train",
    "valid": "n_valid",
    "test": "n_test",
    "psa": "psa_target",
    "holdout_noise_class": "holdout_noise_classes",
}
"""CLI option names (``-`` as ``_``) whose spec key is not the option's name: the key (or setting) to write."""


def did_you_mean(key: Any, allowed: Sequence[str]) -> str | None:
    """A hint for an unknown ``key``: the spec key of a CLI option name (``format`` → ``fmt``,
    ``overwrite`` → ``resume: false``), else the closest allowed key (a typo), else ``None``."""
    if not isinstance(key, str):
        return None
    name = key.strip().lstrip("-").replace("-", "_")
    target = CLI_OPTION_KEYS.get(name)
    if target is not None and target.split(":")[0] in allowed:
        hint = f"'{target}' (the CLI's --{name.replace('_', '-')}"
        if name == "input_level":
            hint += "; its 'off' is input_level_db: null"
        return hint + ")"
    if name != key and name in allowed:
        return repr(name)
    close = difflib.get_close_matches(name, allowed, n=1)
    return repr(close[0]) if close else None


def unknown_keys(data: Mapping[Any, Any], allowed: Sequence[str], where: str) -> list[str]:
    """One message per key of ``data`` not in ``allowed``, with a :func:`did_you_mean` hint."""
    out = []
    for k in data:
        if k not in allowed:
            hint = did_you_mean(k, allowed)
            out.append(
                f"{where}: unknown key {k!r}; allowed: {', '.join(sorted(allowed))}"
                + (f"; did you mean {hint}?" if hint else "")
            )
    return out
