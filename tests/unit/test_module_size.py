"""No module of the package over 400 lines (issue 23): a module that grows past it is split by theme."""

from __future__ import annotations

from pathlib import Path

import batchsep

MAX_LINES = 400


def test_no_module_over_400_lines():
    root = Path(batchsep.__file__).parent
    sizes = {p.relative_to(root): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert len(sizes) > 100  # the package, not an empty folder
    over = {str(p): n for p, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"
