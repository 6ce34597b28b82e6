"""The library's errors under their public name (`from lqmf.errors import LQMFError`); they live in lqmf.base."""

from lqmf.base.errors import *  # noqa: F403
