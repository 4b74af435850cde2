"""Job specs above the API: the YAML spec (``spec``), its stages (``stages``), references between stages
(credentials are refused by :mod:`batchsep.io.credentials`), and running/submitting a spec (``run``, ``submit``)."""
