"""Logging in to the Hub: check a token and save it in huggingface_hub's own token store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from agents.quantization.acquire.hub import hub_endpoint
from agents.quantization.acquire.hub_errors import hub_errors
from lqmf.base.errors import AccessDenied, LQMFError
from lqmf.base.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)


def login(token: str, settings: Optional[Settings] = None) -> str:
    """Check a Hub token and save it in huggingface_hub's own token store (under HF_HOME); return the account name."""
    token = (token or "").strip()
    endpoint = hub_endpoint()
    if not token:
        raise AccessDenied("no token given", f"make a read token at {endpoint}/settings/tokens and log in with it")
    _refuse_token_store_inside(settings)
    from huggingface_hub import HfApi
    from huggingface_hub import login as hub_login

    with hub_errors(endpoint, token=token, logging_in=True):
        # Checked here against the endpoint of this moment; huggingface_hub.login checks it again
        # against the endpoint it was imported with (the same one unless HF_ENDPOINT changed since).
        account = HfApi(endpoint=endpoint).whoami(token=token)
        # Stores the token where every huggingface_hub user finds it; never in git credentials.
        hub_login(token=token, add_to_git_credential=False)
    name = str(account.get("name") or "")
    log.info("logged in to %s as %s", endpoint, name)
    return name


def _refuse_token_store_inside(settings: Optional[Settings]) -> None:
    """Refuse to log in when huggingface_hub's token store would land in the project or models folder."""
    from huggingface_hub import constants

    store = Path(constants.HF_TOKEN_PATH).expanduser().resolve()
    folders = [PROJECT_ROOT] + ([Path(settings.models_dir)] if settings is not None else [])
    for folder in folders:
        if store.is_relative_to(folder.resolve()):
            raise LQMFError(
                f"huggingface_hub would save the token at {store}, inside {folder}",
                "set HF_HOME (or HF_TOKEN_PATH) to a folder outside it, e.g. ~/.cache/huggingface",
            )

