"""Embeddings cached by (model sha256, recipe, text sha256), and file hashes cached by their stat, in one SQLite file.

The model's sha256 is its content hash (a GGUF file's own sha256; a folder's tree hash, as the
manifests record sources), so a changed model never reuses old vectors, and retraining on the same
data is instant. File hashes are remembered by (path, size, mtime, inode): a big model is read once.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from lqmf.base.manifest import MANIFEST_NAME, sha256_file
from lqmf.base.progress import Progress, report

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

CACHE_FILE = "embeddings.sqlite3"
SCHEMA = """
    CREATE TABLE IF NOT EXISTS embeddings (
        model_sha TEXT NOT NULL,
        recipe TEXT NOT NULL,
        text_sha TEXT NOT NULL,
        dim INTEGER NOT NULL,
        pooling TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        vector BLOB NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (model_sha, recipe, text_sha)
    );
    CREATE TABLE IF NOT EXISTS file_hashes (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    )
"""
# SQLite limits the variables of one statement; look texts up in slices.
LOOKUP_SLICE = 500


def text_sha(text: str) -> str:
    """The cache key of a text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recipe(normalize: bool, truncate: bool) -> str:
    """What else decides a vector besides the model and the text."""
    return f"v1;normalize={int(normalize)};truncate={int(truncate)}"


@dataclass
class Embedded:
    """Vectors for a list of texts (in order) and how they were come by."""

    vectors: "np.ndarray"  # float32 [n, dim]
    pooling: str
    computed: int  # texts embedded now
    cached: int  # texts found in the cache
    seconds: float  # embedding time of the computed ones (0 when all were cached)
    token_counts: list[int]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


class EmbeddingCache:
    """The cache file under `folder` (settings.cache_dir); safe to use from several threads and processes."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / CACHE_FILE
        self._lock = threading.Lock()
        self._ready = False
        # Hashes already checked by this object: (path, size, mtime, inode) -> sha256, to skip the database.
        self._known: dict[tuple[str, int, int, int], str] = {}

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: callers come from the shell, workers and the server's threads.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            if not self._ready:
                with self._lock:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
                    self._ready = True
            yield db

    # -- model identity ---------------------------------------------------------------------------
    def file_sha256(self, path: Path) -> str:
        """A file's sha256, read again only when its size, mtime or inode changed."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key in self._known:
            return self._known[key]
        with self._db() as db:
            row = db.execute("SELECT size, mtime_ns, inode, sha256 FROM file_hashes WHERE path = ?",
                             (key[0],)).fetchone()
            if row is not None and tuple(row[:3]) == key[1:]:
                sha = row[3]
            else:
                sha = sha256_file(path)
                db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?)", (*key, sha))
        self._known[key] = sha
        return sha

    def model_sha256(self, path: Path) -> str:
        """A model's content hash: a file's sha256, or a folder's tree hash (manifest.tree_sha256's)."""
        path = Path(path)
        if path.is_file():
            return self.file_sha256(path)
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
            digest.update(f"{file.relative_to(path).as_posix()}\0{self.file_sha256(file)}\n".encode())
        return digest.hexdigest()

    # -- vectors -----------------------------------------------------------------------------------
    def lookup(self, model_sha: str, recipe_key: str, shas: Sequence[str]) -> dict[str, tuple[Any, str, int]]:
        """Cached (vector, pooling, tokens) by text sha, for the shas that are cached."""
        import numpy as np

        found: dict[str, tuple[Any, str, int]] = {}
        unique = sorted(set(shas))
        with self._db() as db:
            for first in range(0, len(unique), LOOKUP_SLICE):
                part = unique[first:first + LOOKUP_SLICE]
                rows = db.execute(
                    f"SELECT text_sha, dim, pooling, tokens, vector FROM embeddings WHERE model_sha = ? AND recipe = ? "
                    f"AND text_sha IN ({', '.join('?' * len(part))})", (model_sha, recipe_key, *part)).fetchall()
                for sha, dim, pooling, tokens, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape[0] == dim:  # a torn row is recomputed, never trusted
                        found[sha] = (vector, pooling, tokens)
        return found

    def store(self, model_sha: str, recipe_key: str, rows: Sequence[tuple[str, Any, str, int]]) -> None:
        """Remember (text sha, vector, pooling, tokens) rows, all in one transaction."""
        import numpy as np

        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(model_sha, recipe_key, sha, int(vec.shape[0]), pooling, int(tokens),
                      np.asarray(vec, dtype=np.float32).tobytes(), now) for sha, vec, pooling, tokens in rows])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def embed(self, manager, model: str, model_sha: str, texts: Sequence[str], *, normalize: bool = True,
              truncate: bool = True, progress: Optional[Progress] = None, what: str = "") -> Embedded:
        """Vectors of `texts` by `model`: cached ones read, the rest embedded through the manager and stored."""
        import numpy as np

        from server.runtime.embeddings import embed_texts

        key = recipe(normalize, truncate)
        shas = [text_sha(t) for t in texts]
        found = self.lookup(model_sha, key, shas)
        missing: dict[str, str] = {}
        for sha, text in zip(shas, texts, strict=True):
            if sha not in found:
                missing.setdefault(sha, text)
        seconds = 0.0
        if missing:
            log.info("embedding %d texts with %s (%d cached)", len(missing), model, len(set(shas)) - len(missing))
            made = embed_texts(manager, model, list(missing.values()), normalize=normalize, truncate=truncate,
                               progress=progress, what=what)
            seconds = made.seconds
            rows = [(sha, made.vectors[i], made.pooling, made.token_counts[i]) for i, sha in enumerate(missing)]
            self.store(model_sha, key, rows)
            found.update({sha: (vec, pooling, tokens) for sha, vec, pooling, tokens in rows})
        else:
            report(progress, what or f"embedding with {model}", len(texts), len(texts))
        vectors = np.stack([found[sha][0] for sha in shas]).astype(np.float32, copy=False)
        dims = {found[sha][0].shape[0] for sha in shas}
        if len(dims) != 1:
            raise ValueError(f"cached vectors of {model} have several dimensions {sorted(dims)}")
        return Embedded(vectors=vectors, pooling=found[shas[0]][1], computed=len(missing),
                        cached=len(set(shas)) - len(missing), seconds=seconds,
                        token_counts=[found[sha][2] for sha in shas])
