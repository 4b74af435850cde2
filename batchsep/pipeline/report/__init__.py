"""The report stage: Markdown/HTML/PNG reports comparing evaluated runs (``driver``)."""
