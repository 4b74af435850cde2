"""The evaluate stage: metrics of an enhance (or prepare) run per file (``driver``)."""
