"""A report for a corpus without references, from real noisy speech, read in headless chromium:
``batchsep enhance`` (run folder "enhanced") → ``evaluate`` (DNSMOS only) → ``report``. (The emotion tag
table of such a report: tests/unit/reporting/test_report_files.py and
tests/integration/test_evaluate_dnsmos.py.)"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchsep.cli.main import EXIT_OK, main
from batchsep.evaluation import dnsmos as dn

pytestmark = [
    pytest.mark.browser,
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(not dn.dnsmos_available(), reason="DNSMOS needs the zoo extra"),
]

FACTS = """
(async () => {
  const audios = [...document.querySelectorAll('audio')];
  const durations = await Promise.all(audios.map(a => a.readyState >= 1 ? a.duration :
      new Promise(res => { a.onloadedmetadata = () => res(a.duration); a.onerror = () => res(-1);
                           a.load(); setTimeout(() => res(-2), 60000); })));
  const links = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href'));
  const fileRows = [...document.querySelectorAll('#files table tbody tr')];
  return {
    sections: [...document.querySelectorAll('section h2')].map(h => h.textContent),
    missingTargets: links.filter(h => !document.getElementById(h.slice(1))),
    fileRows: fileRows.map(tr => [...tr.cells].map(td => td.textContent)),
    fileHeaders: [...document.querySelectorAll('#files table thead th')].map(t => t.textContent),
    exampleLinks: [...document.querySelectorAll('#files a')].map(a => a.getAttribute('href')),
    whys: [...document.querySelectorAll('#examples .why')].map(p => p.textContent),
    players: [...document.querySelectorAll('.player span')].map(s => s.textContent),
    durations,
    imagesBroken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length,
    text: document.body.innerText,
    provenance: document.querySelector('#provenance').innerText,
    pageWidth: document.documentElement.scrollWidth,
  };
})()
"""


def test_reference_free_report_reads_well_in_chromium(
    shared_data: Path, tmp_path: Path, browser: Callable[[], Any]
) -> None:
    noisy = shared_data / "pairs" / "voicebank_demand" / "noisy"
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("p287_001.flac", "p287_002.flac", "p287_004.flac"):
        shutil.copy(noisy / name, inp / name)
    run, out = tmp_path / "enhanced", tmp_path / "report"
    for args in (
        ["enhance", str(inp), str(run), "--no-emotion", "--local"],
        ["evaluate", str(run), "--local"],
        ["report", str(run), "--out", str(out)],
    ):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == EXIT_OK, (args, r.output)

    page = browser()
    for domain in ("Runtime", "Log", "Page"):
        page.call(f"{domain}.enable")
    page.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
              mobile=False)  # fmt: skip
    page.call("Page.navigate", url=(out / "index.html").as_uri())
    page.wait_event("Page.loadEventFired")
    facts = page.call("Runtime.evaluate", expression=FACTS, awaitPromise=True, returnByValue=True)[
        "result"
    ]["value"]
    assert page.errors() == []
    assert facts["sections"] == [
        "Summary", "Reference-free quality (DNSMOS)", "Figures", "Per-file results",
        "Listening examples", "Provenance",
    ]  # fmt: skip
    assert facts["missingTargets"] == []  # every in-page link lands on an element
    assert facts["fileHeaders"][:2] == ["File", "DNSMOS OVRL: input → output"]
    assert facts["fileHeaders"][-1] == "Listen"
    rows = facts["fileRows"]
    assert len(rows) == 3
    ovrl = [float(r[1].split(" → ")[1].split(" ")[0]) for r in rows]
    assert ovrl == sorted(ovrl)  # worst first
    assert sorted(facts["exampleLinks"]) == ["#example-1", "#example-2", "#example-3"]
    assert [w.split(" DNSMOS")[0] for w in facts["whys"]] == ["Worst", "Median", "Best"]
    assert all("of the 3 files of enhanced" in w for w in facts["whys"])
    assert "enhanced · enhanced" not in facts["text"]
    assert [p.split(" (")[0] for p in facts["players"]] == ["noisy", "enhanced"] * 3
    assert all(d > 1.0 for d in facts["durations"]), facts["durations"]
    assert facts["imagesBroken"] == 0
    assert "512-tap" not in facts["text"]  # no words about metrics that are not there
    assert "../enhanced" in facts["provenance"] and str(tmp_path) not in facts["provenance"]
    assert facts["pageWidth"] <= 1280
