"""The SNMF side of the train stage: fitting an SNMF model, and the SNMF-initialised DR-NMF."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from batchsep.errors import ConfigError, ParameterError, StorageError
from batchsep.io import checkpoint, storage
from batchsep.models.base import BatchsepModel, deserialize
from batchsep.pipeline.runner import Runner
from batchsep.pipeline.train.data import DataOptions, log_line, model_config
from batchsep.pipeline.train.outputs import param_count, write_model
from batchsep.pipeline.train.snmf_tasks import learn_snmf


def train_snmf(
    features_uri: str,
    out_uri: str,
    overrides: Mapping[str, Any],
    data: DataOptions,
    stft: Mapping[str, Any],
    runner: Runner,
    verbose: bool,
    device: str,
    input_level_db: float | None,
) -> dict[str, Any]:
    """Learn an SNMF model from ``features_uri``, write it to ``out_uri`` and return its metrics."""
    t0 = time.perf_counter()
    config = model_config("snmf", overrides, n_freq=int(stft["n_fft"]) // 2 + 1)
    log_line(verbose, f"[train snmf] learning dictionaries {config.to_json()}")
    model, info = learn_snmf(
        features_uri, config, data, runner=runner, device=device, verbose=verbose
    )
    info.update(model="snmf", param_count=param_count(model), best_epoch=0, epochs=0)
    info.update(stop_reason="fitted", wall_s=time.perf_counter() - t0)
    write_model(out_uri, model, stft, metrics=info, input_level_db=input_level_db)
    log_line(
        verbose,
        f"[train snmf] valid loss {info['best_valid_loss']:.5f}, wall {info['wall_s']:.1f} s",
    )
    return info


def init_drnmf(
    features_uri: str,
    out_uri: str,
    overrides: Mapping[str, Any],
    data: DataOptions,
    stft: Mapping[str, Any],
    init_from: str | None,
    runner: Runner,
    verbose: bool,
    device: str,
    input_level_db: float | None,
) -> tuple[BatchsepModel, str]:
    """A DR-NMF whose layers are ISTA steps for a trained SNMF dictionary (given or trained now)."""
    from batchsep.models.drnmf import DrnmfEnhancer
    from batchsep.models.snmf import SnmfEnhancer

    fields = DrnmfEnhancer.config_class.__dataclass_fields__  # type: ignore[attr-defined]
    unknown = [k for k in overrides if not k.startswith("snmf.") and k not in fields]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} for drnmf")
    snmf_keys = sorted(k for k in overrides if k.startswith("snmf."))
    if init_from is not None and snmf_keys:
        raise ConfigError(
            f"{snmf_keys[0]}: set the SNMF of --init-from {init_from} when training it"
        )
    if init_from is None:
        snmf_over = {k[5:]: v for k, v in overrides.items() if k.startswith("snmf.")}
        snmf_over |= {
            k: overrides[k] for k in ("rank_speech", "rank_noise", "seed") if k in overrides
        }
        wanted = model_config("snmf", snmf_over, n_freq=int(stft["n_fft"]) // 2 + 1).to_dict()
        init_from = storage.join(out_uri, "snmf")
        if storage.exists(storage.join(init_from, checkpoint.CONFIG_NAME)):
            held = checkpoint.read_checkpoint(init_from)["config"]
            diff = "; ".join(
                f"snmf.{k}: {held.get(k)!r} -> {wanted.get(k)!r}"
                for k in sorted(held.keys() | wanted.keys())
                if held.get(k) != wanted.get(k)
            )
            if diff:
                raise ConfigError(
                    f"{init_from} holds an SNMF trained with other settings ({diff}); delete it "
                    "or use another --out"
                )
        else:
            train_snmf(
                features_uri, init_from, snmf_over, data, stft, runner, verbose, device,
                input_level_db,
            )  # fmt: skip
    try:
        snmf = deserialize(checkpoint.read_checkpoint(init_from))
    except StorageError as e:
        raise StorageError(f"--init-from {init_from}: {e}") from e
    if not isinstance(snmf, SnmfEnhancer):
        raise ParameterError(f"init_from={init_from} holds a {snmf.name!r} model, not an SNMF")
    kw = {k: overrides[k] for k in ("lam", "alpha", "n_layers", "loss") if k in overrides}
    return DrnmfEnhancer.from_snmf(snmf, **kw), init_from
