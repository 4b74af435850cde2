"""The ``>>>`` examples of batchsep's docstrings run and give what they show (issue 23).

One test per module that has examples. An example that needs data, a cluster or a network says
``# doctest: +SKIP`` on its lines.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import batchsep

KNOWN: dict[str, str] = {}


def _modules_with_examples() -> list[str]:
    names = []
    for m in pkgutil.walk_packages(batchsep.__path__, "batchsep."):
        if m.name.endswith("__main__") or (m.ispkg and m.name.count(".") == 0):
            continue
        spec = importlib.util.find_spec(m.name)
        origin = spec.origin if spec else None
        if origin and origin.endswith(".py"):
            with open(origin, encoding="utf-8") as f:
                if ">>>" in f.read():
                    names.append(m.name)
    return sorted(names)


@pytest.mark.slow
@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name: str) -> None:
    if name in KNOWN:
        pytest.skip(KNOWN[name])
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"


def test_examples_are_found() -> None:
    """The collection above finds the modules (an empty parametrization would test nothing)."""
    names = _modules_with_examples()
    assert len(names) >= 20 and "batchsep.dsp.stft" in names
