"""SQLite history (WAL) with named, ordered migrations; Store is the only writer."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from lqmf.base.processes import pid_alive

log = logging.getLogger(__name__)

# Named and ordered; each runs once, inside a transaction, and is recorded in schema_migrations.
MIGRATIONS: list[tuple[str, str]] = [
    ("m001_initial", """
        CREATE TABLE models (
            name TEXT PRIMARY KEY,
            format TEXT NOT NULL,
            level TEXT,
            bits REAL,
            size_bytes INTEGER,
            parameter_count INTEGER,
            path TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL
        );
        CREATE TABLE quantization_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL,
            output TEXT NOT NULL,
            method TEXT NOT NULL,
            level TEXT,
            bits REAL,
            status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'incomplete')),
            error TEXT,
            manifest TEXT,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            models TEXT NOT NULL,
            params TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'incomplete')),
            summary TEXT,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE TABLE experiment_results (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            prompt TEXT NOT NULL,
            response TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_s REAL,
            ttft_s REAL,
            tokens_per_second REAL,
            metrics TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX experiment_results_by_experiment ON experiment_results(experiment_id);
        CREATE TABLE request_stats (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            route TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            latency_s REAL NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX request_stats_by_model ON request_stats(model, created_at);
    """),
    # The factory records the plan it ran and the whole run's measurements (a GGUF run is
    # convert + importance matrix + quantize, so the output manifest alone does not hold them).
    ("m002_quantization_measures", """
        ALTER TABLE quantization_runs ADD COLUMN plan TEXT;
        ALTER TABLE quantization_runs ADD COLUMN wall_time_s REAL;
        ALTER TABLE quantization_runs ADD COLUMN peak_rss_bytes INTEGER;
    """),
    # How each served request ended (stop, length, cancelled, error): failures after the first
    # streamed chunk are recorded too, not only the generations that finished.
    ("m003_request_finish_reason", """
        ALTER TABLE request_stats ADD COLUMN finish_reason TEXT;
    """),
    # A request for the default model that a fallback chain moved on: the models that failed first.
    ("m004_request_fallback", """
        ALTER TABLE request_stats ADD COLUMN fallback_from TEXT;
    """),
    # Models removed, renamed or copied (agents/models/admin.py): what happened to which files, and when.
    ("m005_model_changes", """
        CREATE TABLE model_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            action TEXT NOT NULL CHECK (action IN ('removed', 'renamed', 'copied')),
            name TEXT NOT NULL,
            new_name TEXT,
            path TEXT NOT NULL,
            new_path TEXT,
            size_bytes INTEGER NOT NULL,
            details TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX model_changes_by_name ON model_changes(name, created_at);
    """),
    # A budget search's measurements of one source (agents/quantization/budget): per-tensor sensitivities and
    # the standard levels' measured points, so a second budget on the same source costs only the solve and check.
    ("m006_sensitivities", """
        CREATE TABLE sensitivities (
            key TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            data TEXT NOT NULL,
            created_at REAL NOT NULL
        );
    """),
]


class CommitFailed(sqlite3.DatabaseError):
    """A write's COMMIT failed; it was rolled back, nothing of it was saved, and later writes work."""

    def __init__(self, path: Path, cause: sqlite3.Error) -> None:
        super().__init__(
            f"the history database {path} could not save a write ({cause}); it was rolled back, so nothing of "
            f"it was kept and later writes are unaffected"
        )
        self.cause = cause


class Store:
    """The project's history. Open it, use it from any thread, close it; every write is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._enable_wal()
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self.recovered = self._mark_abandoned()

    # -- schema -------------------------------------------------------------------------------------
    def _enable_wal(self, timeout_s: float = 30.0) -> None:
        """Switch to WAL, waiting while another process opening the same new file switches it.

        SQLite answers "database is locked" at once to a journal-mode change it cannot make now
        (its busy handler is not consulted), so concurrent first opens retry here.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                             "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
            done = {row["name"] for row in self._db.execute("SELECT name FROM schema_migrations")}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    # Look again under the write lock: another process opening the same new database
                    # may have applied it since (two openers once both ran m001: "table models already exists").
                    if self._db.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)).fetchone():
                        self._db.execute("COMMIT")
                        continue
                    for statement in filter(str.strip, sql.split(";")):
                        self._db.execute(statement)
                    self._db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                log.info("applied migration %s to %s", name, self.path)

    def migrations(self) -> list[str]:
        return [row["name"] for row in self._read("SELECT name FROM schema_migrations ORDER BY name")]

    def _mark_abandoned(self) -> int:
        """Runs left 'running' by a process that is gone (killed mid-way) become 'incomplete'."""
        changed = 0
        for table in ("experiments", "quantization_runs"):
            rows = self._db.execute(f"SELECT id, pid FROM {table} WHERE status = 'running'").fetchall()
            dead = [row["id"] for row in rows if not pid_alive(row["pid"])]
            if dead:
                with self._write():
                    self._db.executemany(f"UPDATE {table} SET status = 'incomplete' WHERE id = ?", [(i,) for i in dead])
                changed += len(dead)
        return changed

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one query, taken under the write lock: the one connection is shared by every thread, and a
        read on it while another thread's write is open would see that write's rows before they are saved."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- writing --------------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction at a time (the store is the only writer); all of it is saved or none."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            try:
                self._db.execute("COMMIT")
            except BaseException as exc:
                # A failed COMMIT (a deferred constraint, a full disk, an I/O error) leaves the
                # transaction open and the write lock held: every later BEGIN would fail.
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise CommitFailed(self.path, exc) from exc
                raise

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already done so itself."""
        # Some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM) roll back on their own; a second
        # ROLLBACK would then raise and hide the real error.
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback on %s failed", self.path)

    def record_model(self, record: Any) -> None:
        """Remember a discovered model (insert, or refresh last_seen)."""
        now = time.time()
        with self._write():
            self._db.execute(
                """INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET format = excluded.format, level = excluded.level,
                   bits = excluded.bits, size_bytes = excluded.size_bytes,
                   parameter_count = excluded.parameter_count, path = excluded.path, last_seen = excluded.last_seen""",
                (record.name, record.format, record.level, record.bits, record.size_bytes, record.parameter_count,
                 str(record.path), now, now),
            )

    def start_experiment(self, kind: str, models: list[str], params: dict[str, Any]) -> int:
        with self._write():
            cursor = self._db.execute(
                "INSERT INTO experiments (kind, models, params, status, pid, started_at) "
                "VALUES (?, ?, ?, 'running', ?, ?)",
                (kind, json.dumps(models), json.dumps(params), os.getpid(), time.time()),
            )
        return int(cursor.lastrowid)

    def add_result(self, experiment_id: int, model: str, prompt: str, response: Optional[str] = None,
                   prompt_tokens: Optional[int] = None, completion_tokens: Optional[int] = None,
                   latency_s: Optional[float] = None, ttft_s: Optional[float] = None,
                   tokens_per_second: Optional[float] = None, metrics: Optional[dict] = None) -> int:
        with self._write():
            cursor = self._db.execute(
                """INSERT INTO experiment_results (experiment_id, model, prompt, response, prompt_tokens,
                   completion_tokens, latency_s, ttft_s, tokens_per_second, metrics, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (experiment_id, model, prompt, response, prompt_tokens, completion_tokens, latency_s, ttft_s,
                 tokens_per_second, json.dumps(metrics) if metrics is not None else None, time.time()),
            )
        return int(cursor.lastrowid)

    def finish_experiment(self, experiment_id: int, summary: dict[str, Any], failed: bool = False,
                          incomplete: bool = False) -> None:
        """Close an experiment: done, failed (an error), or incomplete (stopped by the person)."""
        status = "incomplete" if incomplete else "failed" if failed else "done"
        with self._write():
            self._db.execute(
                "UPDATE experiments SET status = ?, summary = ?, finished_at = ? WHERE id = ?",
                (status, json.dumps(summary), time.time(), experiment_id),
            )

    def save_sensitivity(self, key: str, source: str, data: dict[str, Any]) -> None:
        """Keep a budget search's measurements of a source (replacing older ones under the same key)."""
        with self._write():
            self._db.execute("INSERT OR REPLACE INTO sensitivities VALUES (?, ?, ?, ?)",
                             (key, source, json.dumps(data), time.time()))

    def sensitivity(self, key: str) -> Optional[dict[str, Any]]:
        """The measurements kept under `key`, with `created_at`; None when there are none."""
        rows = self._read("SELECT data, created_at FROM sensitivities WHERE key = ?", (key,))
        return {**json.loads(rows[0]["data"]), "created_at": rows[0]["created_at"]} if rows else None

    def start_quantization(self, source: str, output: str, method: str, level: Optional[str],
                           bits: Optional[float], plan: dict[str, Any]) -> int:
        """Record a quantization run as it starts (status running, this process's pid)."""
        with self._write():
            cursor = self._db.execute(
                """INSERT INTO quantization_runs (source, output, method, level, bits, status, pid, started_at, plan)
                   VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)""",
                (source, output, method, level, bits, os.getpid(), time.time(), json.dumps(plan)),
            )
        return int(cursor.lastrowid)

    def finish_quantization(self, run_id: int, status: str, *, manifest: Optional[dict] = None,
                            error: Optional[str] = None, wall_time_s: Optional[float] = None,
                            peak_rss_bytes: Optional[int] = None) -> None:
        """Close a quantization run: done (with its manifest), failed (an error) or incomplete (stopped)."""
        if status not in ("done", "failed", "incomplete"):
            raise ValueError(f"a run finishes done, failed or incomplete, not {status!r}")
        with self._write():
            self._db.execute(
                """UPDATE quantization_runs SET status = ?, manifest = ?, error = ?, wall_time_s = ?,
                   peak_rss_bytes = ?, finished_at = ? WHERE id = ?""",
                (status, json.dumps(manifest) if manifest is not None else None, error, wall_time_s,
                 peak_rss_bytes, time.time(), run_id),
            )

    def record_request(self, model: str, route: str, prompt_tokens: int, completion_tokens: int,
                       latency_s: float, finish_reason: Optional[str] = None,
                       fallback_from: Optional[str] = None) -> None:
        """One served request: tokens, latency, how it ended (stop, length, cancelled, error), and the
        models a fallback chain skipped before this one."""
        with self._write():
            self._db.execute(
                "INSERT INTO request_stats (model, route, prompt_tokens, completion_tokens, latency_s, created_at, "
                "finish_reason, fallback_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (model, route, prompt_tokens, completion_tokens, latency_s, time.time(), finish_reason,
                 fallback_from),
            )

    def record_model_change(self, action: str, name: str, new_name: Optional[str], path: str,
                            new_path: Optional[str], size_bytes: int, details: Optional[dict] = None) -> int:
        """One model removed, renamed or copied: its old and new name and path, its size, the rest as JSON."""
        with self._write():
            cursor = self._db.execute(
                "INSERT INTO model_changes (action, name, new_name, path, new_path, size_bytes, details, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (action, name, new_name, path, new_path, size_bytes,
                 json.dumps(details) if details is not None else None, time.time()),
            )
        return int(cursor.lastrowid)

    # -- reading -----------------------------------------------------------------------------------------
    def model_changes(self, name: Optional[str] = None, action: Optional[str] = None,
                      limit: int = 50) -> list[dict[str, Any]]:
        """Model changes, newest first; `name` matches the old or the new name."""
        return self._newest("model_changes", limit, [
            ("(name = ? OR new_name = ?)", [name, name] if name else []),
            ("action = ?", [action] if action else []),
        ])

    def experiments(self, kind: Union[str, Sequence[str], None] = None, model: Optional[str] = None,
                    status: Optional[str] = None, limit: int = 50) -> list[dict[str, Any]]:
        """Experiments, newest first, filtered by kind (one or several), a model they involve, or status."""
        kinds = [kind] if isinstance(kind, str) else list(kind or [])
        return self._newest("experiments", limit, [
            (f"kind IN ({', '.join('?' * len(kinds))})", kinds),
            ("status = ?", [status] if status else []),
            ("EXISTS (SELECT 1 FROM json_each(models) WHERE value = ?)", [model] if model else []),
        ])

    def quantization_runs(self, method: Optional[str] = None, status: Optional[str] = None,
                          limit: int = 50) -> list[dict[str, Any]]:
        """Quantization runs, newest first, optionally of one method or status."""
        return self._newest("quantization_runs", limit, [
            ("method = ?", [method] if method else []), ("status = ?", [status] if status else []),
        ])

    def _newest(self, table: str, limit: int, filters: list[tuple[str, list]]) -> list[dict[str, Any]]:
        """Rows of `table`, newest first; each (condition, values) filter applies only when it has values."""
        used = [(condition, values) for condition, values in filters if values]
        where = " AND ".join(["1 = 1", *(condition for condition, _ in used)])
        args = [value for _, values in used for value in values]
        rows = self._read(f"SELECT * FROM {table} WHERE {where} ORDER BY id DESC LIMIT ?", args + [limit])
        return [self._decode(dict(row)) for row in rows]

    def experiment(self, experiment_id: int) -> Optional[dict[str, Any]]:
        rows = self._read("SELECT * FROM experiments WHERE id = ?", (experiment_id,))
        return self._decode(dict(rows[0])) if rows else None

    def results(self, experiment_id: int) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM experiment_results WHERE experiment_id = ? ORDER BY id", (experiment_id,))
        return [self._decode(dict(row)) for row in rows]

    def statistics(self, model: Optional[str] = None) -> dict[str, Any]:
        """Counts and per-model request totals; of one model's experiments, quantizations and requests when given."""
        one = lambda sql, args=(): self._read(sql, args)[0][0]  # noqa: E731
        involves = " WHERE EXISTS (SELECT 1 FROM json_each(models) WHERE value = ?)" if model else ""
        of_model = (model,) if model else ()
        per_model = self._read(
            f"""SELECT model, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt_tokens,
               SUM(completion_tokens) AS completion_tokens, AVG(latency_s) AS mean_latency_s
               FROM request_stats {"WHERE model = ?" if model else ""} GROUP BY model ORDER BY requests DESC""",
            of_model)
        incomplete = f"{involves} AND" if model else " WHERE"
        return {
            **({"model": model} if model else {}),
            "models_seen": one("SELECT COUNT(*) FROM models" + (" WHERE name = ?" if model else ""), of_model),
            "experiments": one("SELECT COUNT(*) FROM experiments" + involves, of_model),
            "experiments_incomplete": one(f"SELECT COUNT(*) FROM experiments{incomplete} status = 'incomplete'",
                                          of_model),
            "results": one("SELECT COUNT(*) FROM experiment_results" + (
                f" WHERE experiment_id IN (SELECT id FROM experiments{involves})" if model else ""), of_model),
            "quantization_runs": one("SELECT COUNT(*) FROM quantization_runs" + (
                " WHERE source = ? OR output = ?" if model else ""), of_model * 2),
            "requests": one("SELECT COUNT(*) FROM request_stats" + (" WHERE model = ?" if model else ""), of_model),
            "per_model": [dict(row) for row in per_model],
        }

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for key in ("models", "params", "summary", "metrics", "manifest", "plan", "details"):
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
        return row

    def close(self) -> None:
        with self._lock:
            self._db.close()

