"""The Python API: one function per CLI command, each a thin wrapper choosing the runner.

The stages are defined by theme in ``_data`` (scan, prepare, features), ``_enhance`` (enhance, tag, models),
``_train`` (train, inspect) and ``_evaluate`` (evaluate, report), and are public here only: import them from
``batchsep.api`` (or ``batchsep``). The parameter rules they share with the CLI and job specs are
:mod:`batchsep.api_params` (:func:`check_params`).

>>> import batchsep                               # doctest: +SKIP
>>> summary = batchsep.scan("data/", "runs/r1")   # doctest: +SKIP

Where scan, prepare, features, enhance, tag and evaluate run (``local``, ``workers``, ``address``; one rule,
``batchsep.distributed.runtime.placement``): ``local=True`` in this process, one worker; ``local=False`` on
Ray (``address``, else ``$RAY_ADDRESS``, else an embedded local Ray with ``workers`` CPUs); ``local=None``
(the default) on Ray when an address is given or ``$RAY_ADDRESS`` is set, when ``workers`` > 1, or when
Ray already runs in this process, and otherwise in this process when the work is small (at most
``SMALL_JOB_FILES`` = 32 files and ``SMALL_JOB_SECONDS`` = 2 minutes of audio, see
``batchsep.pipeline.runner``), else on the embedded Ray.
"""

from __future__ import annotations

# public names, re-exported (`x as x`); no __all__: a function added here is a job-spec stage at once
from batchsep.api._data import features as features
from batchsep.api._data import prepare as prepare
from batchsep.api._data import scan as scan
from batchsep.api._enhance import enhance as enhance
from batchsep.api._enhance import models as models
from batchsep.api._enhance import tag as tag
from batchsep.api._evaluate import evaluate as evaluate
from batchsep.api._evaluate import report as report
from batchsep.api._train import inspect as inspect
from batchsep.api._train import train as train
from batchsep.api_params import check_params as check_params  # batchsep.api.check_params

_NOT_STAGES = ("check_params",)
"""Public functions of this module that are not stages (``batchsep.jobs.stages.stage_functions``)."""

for _stage in (scan, prepare, features, train, inspect, enhance, tag, evaluate, report, models):
    _stage.__module__ = __name__  # public here: the job-spec stages are this module's functions
del _stage
