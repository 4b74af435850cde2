"""Job specs above the API: the YAML spec (``spec``), its stages (``stages``), references between stages,
credential checks, and running/submitting a spec (``run``, ``submit``)."""
