"""What every stage shares: ``job.json`` provenance (``jobinfo``), progress callbacks, Ctrl-C handling."""
