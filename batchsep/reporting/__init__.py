"""Reports comparing runs: Markdown, one self-contained HTML page, PNG figures. Encodes, no paths."""

from batchsep.reporting.render import encode_wav, render_report

__all__ = ["encode_wav", "render_report"]
