"""Acquire models: download from the Hugging Face Hub, import local files, log in to the Hub.

A download lists the repo, picks the files LQMF can use (a safetensors folder, or one GGUF file),
fetches them with huggingface_hub into a hidden staging folder inside the models folder, writes an
LQMF manifest and renames the result into place, so the models folder never holds half a model.

  hub.py          the endpoint, repo ids, a repo's listing
  hub_errors.py   huggingface_hub / network errors -> LQMF errors with what to do
  selection.py    which files of a repo or folder make a model
  placement.py    Acquired; the names an entry of the models folder may take
  download.py     download_model()
  local.py        import_model()
  credentials.py  login()
"""

from __future__ import annotations

from agents.quantization.acquire.credentials import login
from agents.quantization.acquire.download import STAGING_PREFIX, download_model
from agents.quantization.acquire.hub import (
    DEFAULT_ENDPOINT,
    REPO_ID_EXAMPLE,
    RemoteFile,
    RepoListing,
    check_repo_id,
    hub_endpoint,
)
from agents.quantization.acquire.local import import_model
from agents.quantization.acquire.placement import Acquired
from agents.quantization.acquire.selection import Selection, pick_hf_files, select_files

__all__ = [
    "DEFAULT_ENDPOINT", "REPO_ID_EXAMPLE", "STAGING_PREFIX", "Acquired", "RemoteFile", "RepoListing", "Selection",
    "check_repo_id", "download_model", "hub_endpoint", "import_model", "login", "pick_hf_files", "select_files",
]
