"""``${STAGE.PARAM}`` references in a job spec, resolved against the stages parsed before."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from batchsep.errors import ConfigError

if TYPE_CHECKING:
    from batchsep.jobs.schema import StageSpec

_REF_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}")


class ReferenceResolver:
    """Resolves ``${...}`` references against the stages validated so far."""

    def __init__(self) -> None:
        self.stages: list[StageSpec] = []
        self.defaults: list[dict[str, Any]] = []

    def lookup(self, ref: str, where: str) -> Any:
        parts = ref.strip().split(".")
        if parts and parts[0] == "stages":
            parts = parts[1:]
        if len(parts) != 2 or not all(parts):
            raise ConfigError(
                f"{where}: bad reference '${{{ref}}}'; write ${{STAGE.PARAM}} or "
                "${stages.NAME_OR_INDEX.PARAM}"
            )
        key, param = parts
        by_name = {s.name: i for i, s in enumerate(self.stages)}
        i = int(key) if key.isdigit() else by_name.get(key)
        if i is None or i >= len(self.stages):
            known = ", ".join(f"{j} ({s.name})" for j, s in enumerate(self.stages)) or "none"
            raise ConfigError(
                f"{where}: reference '${{{ref}}}' names no earlier stage (a reference may only "
                f"point to a stage before this one); earlier stages: {known}"
            )
        target = self.stages[i]
        if param in target.params:
            return target.params[param]
        if param in self.defaults[i]:
            return self.defaults[i][param]
        raise ConfigError(
            f"{where}: reference '${{{ref}}}': {target.label} has no parameter {param!r}; "
            f"parameters: {', '.join(sorted(self.defaults[i]) + sorted(target.params))}"
        )

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list | tuple):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        if not isinstance(value, str) or "$" not in value:
            return value
        whole = _REF_RE.fullmatch(value)
        if whole and whole.group(1) is not None:
            return self.lookup(whole.group(1), where)

        def sub(m: re.Match[str]) -> str:
            if m.group(1) is None:
                return "${"
            v = self.lookup(m.group(1), where)
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise ConfigError(
                    f"{where}: '${{{m.group(1)}}}' is {v!r}; only strings and numbers can be "
                    "interpolated inside a longer string"
                )
            return str(v)

        return _REF_RE.sub(sub, value)
