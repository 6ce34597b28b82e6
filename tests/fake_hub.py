"""A local stand-in for the Hugging Face Hub's download API, served on 127.0.0.1 (point HF_ENDPOINT at it).

It answers what huggingface_hub's snapshot_download and login ask: repo info, the recursive tree
(paged with a Link header when `page_size` is set), HEAD/GET on resolve URLs (with Range, so resumed
downloads can be checked) and /api/whoami-v2. As on the real Hub: an unknown token is refused (401)
everywhere; private repos need a known token (401 RepoNotFound otherwise); a gated repo's info and
file list are public but its files need an approved token (401 GatedRepo without a token, 403 with
one); unknown repos get 404 RepoNotFound and unknown revisions 404 RevisionNotFound.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Files the real Hub stores with git-lfs: their tree entries carry an `lfs` block, their ETag is the sha256.
LFS_SUFFIXES = (".safetensors", ".gguf", ".model", ".bin", ".pt", ".pth", ".h5", ".onnx", ".msgpack")


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    private: bool = False
    gated: bool = False


@dataclass
class FakeHub:
    """Repos by id, the tokens it accepts, and a log of what was asked (for assertions)."""

    repos: dict[str, FakeRepo] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    gated_access: set[str] = field(default_factory=set)  # tokens approved for gated repos
    requests: list[tuple[str, str, Optional[str]]] = field(default_factory=list)  # method, path, Range
    # Break the connection after this many body bytes of one file (a dropped download); -1: never.
    cut_after: dict[str, int] = field(default_factory=dict)
    # Answer the next GET of this file with this HTTP status (a server error mid-download).
    fail_get: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)  # token -> user name for whoami (default fake-user)
    page_size: int = 0  # tree entries per page; 0: everything on one page
    url: str = ""
    _server: Optional[ThreadingHTTPServer] = None

    def add_folder(self, repo_id: str, folder: Path, **flags) -> None:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        self.repos[repo_id] = FakeRepo(files, **flags)

    def add_files(self, repo_id: str, files: dict[str, bytes], **flags) -> None:
        """A repo made of these files (paths relative to the repo root)."""
        self.repos[repo_id] = FakeRepo(dict(files), **flags)

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- handling ------------------------------------------------------------------------------------
    @staticmethod
    def _token(auth: str) -> str:
        return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""

    def _deny(self, repo_id: str, repo: Optional[FakeRepo], auth: str, download: bool) -> Optional[tuple[int, dict]]:
        token = self._token(auth)
        if token and token not in self.tokens:
            return 401, {"X-Error-Message": "Invalid credentials in Authorization header"}
        if repo is None:
            return 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
        if repo.private and not token:
            return 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Invalid username or password."}
        # A gated repo's card, info and file list are public; its files are not.
        if repo.gated and download and not token:
            return 401, {"X-Error-Code": "GatedRepo",
                         "X-Error-Message": f"Access to model {repo_id} is restricted. You must have access to it "
                                            "and be authenticated to access it. Please log in."}
        if repo.gated and download and token not in self.gated_access:
            return 403, {"X-Error-Code": "GatedRepo",
                         "X-Error-Message": f"Access to model {repo_id} is restricted and you are not in the "
                                            "authorized list."}
        return None

    def _handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        url = urlparse(req.path)
        path = unquote(url.path)
        self.requests.append((req.command, path, req.headers.get("Range")))
        if path == "/api/whoami-v2":
            return self._whoami(req, head)
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/.*)?)?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        match = api or resolve
        if match is None:
            return self._send(req, 404, b'{"error": "not found"}', {}, head)
        repo_id = match.group(1)
        repo = self.repos.get(repo_id)
        denied = self._deny(repo_id, repo, req.headers.get("Authorization", ""), download=resolve is not None)
        if denied:
            status, headers = denied
            body = json.dumps({"error": headers.get("X-Error-Message", "")}).encode()
            return self._send(req, status, body, headers, head)
        revision = (api.group(3) if api else resolve.group(2)) or "main"
        if revision not in ("main", COMMIT):
            headers = {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {revision}"}
            return self._send(req, 404, json.dumps({"error": f"Invalid rev id: {revision}"}).encode(), headers, head)
        if api and api.group(2) != "tree":
            body = {"id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": repo.private,
                    "gated": "manual" if repo.gated else False,
                    "siblings": [{"rfilename": name} for name in repo.files]}
            return self._send(req, 200, json.dumps(body).encode(), {}, head)
        if api:
            return self._tree(req, path, repo, parse_qs(url.query), head)
        name = resolve.group(3)
        if name not in repo.files:
            return self._send(req, 404, b'{"error": "entry not found"}', {"X-Error-Code": "EntryNotFound"}, head)
        status = self.fail_get.pop(name, None) if not head else None
        if status is not None:
            return self._send(req, status, json.dumps({"error": "Internal Error"}).encode(), {}, head)
        return self._send_file(req, name, repo.files[name], head)

    def _whoami(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        token = self._token(req.headers.get("Authorization", ""))
        if token not in self.tokens:
            message = "Invalid credentials in Authorization header" if token else "Invalid username or password."
            return self._send(req, 401, json.dumps({"error": message}).encode(), {"X-Error-Message": message}, head)
        name = self.accounts.get(token, "fake-user")
        body = {"type": "user", "name": name, "fullname": name, "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": f"{name}-read", "role": "read"}}}
        return self._send(req, 200, json.dumps(body).encode(), {}, head)

    def _tree(self, req: BaseHTTPRequestHandler, path: str, repo: FakeRepo, query: dict, head: bool) -> None:
        entries = [self._entry(name, data) for name, data in repo.files.items()]
        headers = {}
        if self.page_size:
            start = int(query.get("cursor", ["0"])[0])
            end = start + self.page_size
            if end < len(entries):
                headers["Link"] = f'<{self.url}{path}?recursive=true&cursor={end}>; rel="next"'
            entries = entries[start:end]
        return self._send(req, 200, json.dumps(entries).encode(), headers, head)

    @staticmethod
    def _entry(name: str, data: bytes) -> dict:
        entry = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _send_file(self, req: BaseHTTPRequestHandler, name: str, data: bytes, head: bool) -> None:
        etag = hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else hashlib.sha1(data).hexdigest()
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", req.headers.get("Range") or "")
        if ranged and not head:
            start = int(ranged.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        cut = self.cut_after.pop(name, -1) if not head else -1
        if cut >= 0:
            # Promise the whole body, send part of it, and drop the connection: a network failure mid-file.
            req.send_response(206 if ranged else 200)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                req.send_header(key, value)
            req.end_headers()
            req.wfile.write(body[:cut])
            req.wfile.flush()
            req.close_connection = True
            req.connection.shutdown(2)
            return
        self._send(req, 206 if ranged and not head else 200, body, headers, head, length=len(data) if head else None)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict, head: bool,
              length: Optional[int] = None) -> None:
        req.send_response(status)
        headers = {"Content-Type": "application/json" if body[:1] in (b"{", b"[") else "application/octet-stream",
                   **headers, "Content-Length": str(length if length is not None else len(body))}
        for key, value in headers.items():
            req.send_header(key, value)
        req.end_headers()
        if not head:
            req.wfile.write(body)
