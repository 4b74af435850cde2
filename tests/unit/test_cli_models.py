"""``batchsep models``: every name enhance accepts, with role, rate, licence, source and measured figures."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from zoo_helpers import require_zoo

from batchsep.cli.main import main
from batchsep.pipeline.enhance import catalog, zoo


def test_models_lists_every_name() -> None:
    require_zoo()
    res = CliRunner().invoke(main, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in map(json.loads, res.output.splitlines())}
    assert {"default", "default-emotion", *zoo.ZOO} <= set(rows)
    assert rows["default-emotion"]["role"] == "emotion"
    for name in ["default", *zoo.ZOO]:
        r = rows[name]
        assert r["role"] == "enhancer" and r["status"] == "ok" and r["licence"] and r["source"]
        assert r["sample_rate"] in (16000, 48000)
    cards = zoo.model_cards()["models"]
    for name, figures in cards.items():  # shown only where measured on these very weights
        want = (
            figures.get("voicebank_sdri_db")
            if figures.get("sha256") in (None, rows[name]["sha256"])
            else None
        )
        assert rows[name]["voicebank_sdri_db"] == want
    text = CliRunner().invoke(main, ["models"]).output
    assert "deepfilternet3" in text and "licence" in text


def test_models_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = zoo.importlib.util.find_spec
    monkeypatch.setattr(
        zoo.importlib.util, "find_spec", lambda n, *a: None if n == "pyrnnoise" else real(n, *a)
    )
    rows = {r["name"]: r for r in catalog.list_models()}
    assert "pip install 'batchsep[zoo]'" in rows["rnnoise"]["status"]
    assert rows["default"]["status"] == "ok"
