"""The version of LQMF, one place: the package metadata (pyproject) and the API both read it."""

__version__ = "0.1.0"
