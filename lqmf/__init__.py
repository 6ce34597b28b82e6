"""LQMF core: settings, errors, logging and environment set-up shared by the shell and the server."""

__version__ = "0.1.0"
