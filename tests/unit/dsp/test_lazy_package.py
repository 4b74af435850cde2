"""``batchsep.dsp`` imports its names on first use (issue 23: the CLI reads ``dsp.level`` without torch),
with the names an eager package had: ``stft`` and ``resample`` are the functions, not their modules."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_level_module_does_not_import_torch():
    assert _run("import sys, batchsep.dsp.level; print('torch' in sys.modules)") == "False"


@pytest.mark.slow  # imports torch in a fresh process
def test_names_are_the_functions_whichever_is_imported_first():
    code = (
        "import batchsep.dsp.stft, batchsep.dsp.resample\n"  # the submodules first
        "from batchsep.dsp import stft, resample, StftConfig, irm\n"
        "import batchsep.dsp as d\n"
        "print(callable(stft) and stft.__module__, resample.__module__, d.stft is stft,"
        " StftConfig.__name__, irm.__module__)\n"
    )
    assert _run(code) == (
        "batchsep.dsp.stft batchsep.dsp.resample True StftConfig batchsep.dsp.masks"
    )


def test_an_unknown_name_is_an_attribute_error():
    code = "import batchsep.dsp as d\ntry:\n    d.nope\nexcept AttributeError as e:\n    print(e)\n"
    assert _run(code) == "module 'batchsep.dsp' has no attribute 'nope'"
