"""Talking to the Hugging Face Hub: which endpoint, what a repo id looks like, and a repo's file listing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from lqmf.base.errors import DownloadError

DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_ID_EXAMPLE = "Qwen/Qwen2.5-0.5B-Instruct"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Hub repo as the tree listing describes it."""

    path: str
    size: int
    sha256: Optional[str] = None  # known for git-lfs files


@dataclass(frozen=True)
class RepoListing:
    """A repo pinned to one commit, with every file in it."""

    repo_id: str
    commit: str
    endpoint: str
    files: tuple[RemoteFile, ...]


def hub_endpoint() -> str:
    """The Hub to talk to: HF_ENDPOINT as it is now (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or "").strip().rstrip("/") or DEFAULT_ENDPOINT


def check_repo_id(repo_id: str) -> str:
    """The repo id in canonical form (a pasted Hub URL is accepted), or a DownloadError saying what one looks like."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = (repo_id or "").strip()
    for prefix in (hub_endpoint() + "/", DEFAULT_ENDPOINT + "/", "hf://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.strip("/")
    try:
        validate_repo_id(text)
    except HFValidationError:
        raise DownloadError(
            f"{repo_id!r} is not a Hugging Face repo id",
            f"a repo id is ORG/NAME as on its Hub page, e.g. {REPO_ID_EXAMPLE}",
        ) from None
    return text


def list_repo(repo_id: str, endpoint: str, revision: Optional[str], token: Optional[str]) -> RepoListing:
    """Resolve the revision to a commit and list every file in the repo at it (sizes, LFS hashes)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, token=token, library_name="lqmf")
    info = api.model_info(repo_id, revision=revision)
    commit = str(info.sha)
    files = tuple(
        RemoteFile(entry.path, int(entry.size), entry.lfs.sha256 if entry.lfs is not None else None)
        for entry in api.list_repo_tree(repo_id, recursive=True, revision=commit)
        if isinstance(entry, RepoFile)
    )
    return RepoListing(repo_id, commit, endpoint, files)

