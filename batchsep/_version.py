"""The package version, in a module of its own: modules below the API read it without importing the
``batchsep`` façade (whose stage names reach :mod:`batchsep.api` lazily), so no import circle runs through it."""

__version__ = "0.1.0"
