"""Public name of the library's settings (`from lqmf.settings import load_settings`); they live in lqmf.base."""

from lqmf.base.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
