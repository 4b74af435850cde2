"""The rendered index.html in real headless chromium: loads offline, no errors, figures and tables."""

from __future__ import annotations

import base64
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

PAGE_FACTS = """
(async () => {
  const imgs = [...document.images];
  const audios = [...document.querySelectorAll('audio')];
  const meta = await Promise.all(audios.map(a => a.readyState >= 1 ? a.duration :
      new Promise(res => { a.onloadedmetadata = () => res(a.duration); a.onerror = () => res(-1);
                           a.load(); setTimeout(() => res(-2), 60000); })));
  const refs = [...document.querySelectorAll('[src],[href]')]
      .map(e => e.getAttribute('src') || e.getAttribute('href'));
  return {
    title: document.title,
    images: imgs.length,
    imagesLoaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    imageWidths: imgs.map(i => i.naturalWidth),
    tables: document.querySelectorAll('table').length,
    summaryRows: document.querySelectorAll('#summary table tbody tr').length,
    bodyRows: document.querySelectorAll('table tbody tr').length,
    audioDurations: meta,
    sections: [...document.querySelectorAll('section h2')].map(h => h.textContent),
    nonDataRefs: refs.filter(u => !u.startsWith('data:') && !u.startsWith('#')),
    scripts: document.scripts.length,
    pageWidth: document.documentElement.scrollWidth,
  };
})()
"""


def png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def test_report_renders_in_chromium(
    tmp_path: Path, browser: Callable[[], Any], full_report: dict[str, bytes]
) -> None:
    out = tmp_path / "report"
    out.mkdir()
    for name, data in full_report.items():
        (out / name).write_bytes(data)

    page = browser()
    for domain in ("Runtime", "Log", "Page", "Network"):
        page.call(f"{domain}.enable")
    page.call(
        "Emulation.setDeviceMetricsOverride",
        width=1280,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    page.call("Page.navigate", url=(out / "index.html").as_uri())
    page.wait_event("Page.loadEventFired")
    facts = page.call(
        "Runtime.evaluate", expression=PAGE_FACTS, awaitPromise=True, returnByValue=True
    )["result"]["value"]

    height = int(page.call("Page.getLayoutMetrics")["cssContentSize"]["height"])
    page.call(
        "Emulation.setDeviceMetricsOverride",
        width=1280,
        height=min(height, 16000),
        deviceScaleFactor=1,
        mobile=False,
    )
    shot = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "screenshot.png").write_bytes(shot)
    if os.environ.get("BATCHSEP_SCREENSHOT_DIR"):
        shutil.copy(tmp_path / "screenshot.png", Path(os.environ["BATCHSEP_SCREENSHOT_DIR"]))

    assert page.errors() == []
    requested = [
        ev["params"]["request"]["url"]
        for ev in page.events
        if ev["method"] == "Network.requestWillBeSent"
    ]
    assert requested and all(u.startswith(("file:", "data:")) for u in requested), requested
    assert facts["title"] == "batchsep evaluation report"
    assert facts["nonDataRefs"] == [] or all(r.startswith("#") for r in facts["nonDataRefs"])
    assert facts["scripts"] == 0
    # 3 metric figures + 2 spectrograms + 1 confusion matrix, all decoded
    assert facts["images"] == 6 and facts["imagesLoaded"] == 6, facts
    assert min(facts["imageWidths"]) > 300
    assert facts["summaryRows"] == 2
    assert facts["tables"] >= 6 and facts["bodyRows"] >= 2 + 6 + 5 + 2 + 8
    assert facts["sections"] == [
        "Summary",
        "Figures",
        "Breakdowns",
        "Listening examples",
        "Emotion tagging",
        "Provenance",
    ]
    assert len(facts["audioDurations"]) == 6
    assert all(d == pytest.approx(1.0, abs=0.01) for d in facts["audioDurations"]), facts
    assert facts["pageWidth"] <= 1280  # nothing overflows horizontally
    w, h = png_size(shot)
    assert w == 1280 and h > 2000
