"""The Hub error explainer: huggingface_hub and network errors turned into LQMF errors that say what to do."""

from __future__ import annotations

import errno
import logging
import os
from contextlib import contextmanager
from typing import Iterator, Optional

from agents.quantization.acquire.hub import REPO_ID_EXAMPLE
from lqmf.base.errors import AccessDenied, DownloadError, InsufficientDisk, LQMFError

log = logging.getLogger(__name__)


def _token_origin(token: Optional[str]) -> Optional[str]:
    """Where the token huggingface_hub sent came from, in words (None: no token was sent)."""
    if token:
        return "the token given"
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return "the token in HF_TOKEN"
    from huggingface_hub import get_token

    return "the token saved by `login`" if get_token() else None


@contextmanager
def hub_errors(
    endpoint: str, *, repo_id: Optional[str] = None, revision: Optional[str] = None,
    token: Optional[str] = None, logging_in: bool = False,
) -> Iterator[None]:
    """Turn huggingface_hub and network errors into LQMF errors whose hint says what to do."""
    try:
        yield
    except LQMFError:
        raise
    except Exception as exc:
        explained = _explain(exc, endpoint, repo_id, revision, token, logging_in)
        if explained is None:
            raise
        log.debug("Hub error explained as %r", explained, exc_info=True)
        raise explained from exc


def _explain(
    exc: Exception, endpoint: str, repo_id: Optional[str], revision: Optional[str], token: Optional[str],
    logging_in: bool,
) -> Optional[LQMFError]:
    """The LQMF error for one huggingface_hub / network error, or None when it is not one of those."""
    import httpx2
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = repo_id or "the repo"
    tokens_page = f"{endpoint}/settings/tokens"
    how_to_login = "log in with `login` and a token of an account that can read it (or set HF_TOKEN)"
    if isinstance(exc, GatedRepoError):
        origin = _token_origin(token)
        hint = (f"then use a token of the account that accepted it: {how_to_login}" if origin else
                f"then make a read token at {tokens_page} and log in with `login` (or set HF_TOKEN)")
        return AccessDenied(f"{repo} is gated: accept its licence at {endpoint}/{repo}", hint)
    if isinstance(exc, RevisionNotFoundError):
        return DownloadError(f"{repo} has no revision {revision!r}",
                             f"use a branch, tag or commit listed at {endpoint}/{repo}/commits/main, "
                             "or leave the revision out for the latest")
    if isinstance(exc, DisabledRepoError):
        return DownloadError(f"{repo} has been disabled on the Hub", "pick another repo")
    if isinstance(exc, RepositoryNotFoundError):
        origin = _token_origin(token)
        if origin:
            return DownloadError(f"{repo} was not found on {endpoint}, or {origin} cannot read it",
                                 f"check the spelling (ORG/NAME, e.g. {REPO_ID_EXAMPLE}); "
                                 "for a private repo use a token of an account with access")
        return DownloadError(f"{repo} was not found on {endpoint}, or it is private",
                             f"check the spelling (ORG/NAME, e.g. {REPO_ID_EXAMPLE}); for a private repo, "
                             f"{how_to_login}")
    if isinstance(exc, RemoteEntryNotFoundError):
        return DownloadError(f"a file of {repo} vanished from the Hub during the download", "run it again")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return _explain_status(status, endpoint, repo, token, logging_in, tokens_page)
    if isinstance(exc, OfflineModeIsEnabled):
        return DownloadError("huggingface_hub is in offline mode (HF_HUB_OFFLINE is set)", "unset HF_HUB_OFFLINE")
    if isinstance(exc, (LocalEntryNotFoundError, httpx2.TransportError, ConnectionError, TimeoutError)):
        cause = exc.__cause__ or exc
        return DownloadError(
            f"could not reach the Hub at {endpoint} ({type(cause).__name__}: {str(cause)[:200]})",
            "check the network connection, or set HF_ENDPOINT to a Hub mirror you can reach; "
            "a download that stopped goes on from its finished files",
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return InsufficientDisk(f"the disk filled up while downloading {repo}", "free some space and run it again")
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return DownloadError(f"a file of {repo} arrived with the wrong size", "run the same download again")
    if isinstance(exc, ValueError) and not logging_in:
        return DownloadError(f"could not download {repo}: {exc}", "see logs/lqmf.log")
    if isinstance(exc, ValueError):  # huggingface_hub refuses organization tokens this way
        return AccessDenied(f"the token cannot log in: {exc}", f"make a personal read token at {tokens_page}")
    return None


def _explain_status(
    status: int, endpoint: str, repo: str, token: Optional[str], logging_in: bool, tokens_page: str
) -> LQMFError:
    """The LQMF error for an HTTP status the Hub answered with."""
    origin = "the token" if logging_in else _token_origin(token)
    if status == 401 and origin:
        env = "; HF_TOKEN wins over a saved token, so fix or unset it" if "HF_TOKEN" in origin else ""
        return AccessDenied(f"the Hub at {endpoint} refused {origin}",
                            f"it is wrong, expired or revoked: make a new read token at {tokens_page}, "
                            f"then log in with it (`login`){env}")
    if status == 401:
        return AccessDenied(f"{repo} needs a Hub token",
                            f"make a read token at {tokens_page} and log in with it (`login`), or set HF_TOKEN")
    if status == 403:
        return AccessDenied(f"the Hub at {endpoint} refused access to {repo}",
                            "use a token with read access to it (a fine-grained token may not cover this repo)")
    if status == 429:
        return DownloadError(f"the Hub at {endpoint} is rate-limiting these requests", "wait a minute and try again")
    return DownloadError(f"the Hub at {endpoint} answered HTTP {status} for {repo}",
                         "try again later; a download that stopped goes on from its finished files")

