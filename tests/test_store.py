"""The SQLite history: exact schema, migrations once, one writer, crash consistency, text kept exactly."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memory.store import MIGRATIONS, Store
from server.runtime.discovery import discover
from tests.conftest import REPO


def intact(path: Path) -> bool:
    """SQLite's own check of the whole file (pages, indexes, constraints), from a connection of its own."""
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()

SCHEMA = {
    "models": ["name", "format", "level", "bits", "size_bytes", "parameter_count", "path", "first_seen", "last_seen"],
    "quantization_runs": ["id", "source", "output", "method", "level", "bits", "status", "error", "manifest", "pid",
                          "started_at", "finished_at", "plan", "wall_time_s", "peak_rss_bytes"],
    "experiments": ["id", "kind", "models", "params", "status", "summary", "pid", "started_at", "finished_at"],
    "experiment_results": ["id", "experiment_id", "model", "prompt", "response", "prompt_tokens", "completion_tokens",
                           "latency_s", "ttft_s", "tokens_per_second", "metrics", "created_at"],
    "request_stats": ["id", "model", "route", "prompt_tokens", "completion_tokens", "latency_s", "created_at",
                      "finish_reason", "fallback_from"],
    "model_changes": ["id", "action", "name", "new_name", "path", "new_path", "size_bytes", "details", "created_at"],
    "sensitivities": ["key", "source", "data", "created_at"],
    "schema_migrations": ["name", "applied_at"],
}


def test_exact_schema_and_migrations_apply_once(tmp_path):
    store = Store(tmp_path / "lqmf.db")
    store.close()
    store = Store(tmp_path / "lqmf.db")  # reopening applies nothing twice
    assert store.migrations() == [name for name, _ in MIGRATIONS]
    db = sqlite3.connect(tmp_path / "lqmf.db")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} - {"sqlite_sequence"}
    assert tables == set(SCHEMA)
    for table, columns in SCHEMA.items():
        assert [row[1] for row in db.execute(f"PRAGMA table_info({table})")] == columns
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    store.close()


def test_experiments_results_filters_and_statistics(tmp_path, demo_dir):
    store = Store(tmp_path / "lqmf.db")
    for record in discover(demo_dir):
        store.record_model(record)
    exp = store.start_experiment("compare", ["demo-q4_k_m", "demo-f16"], {"max_tokens": 8})
    store.add_result(exp, "demo-q4_k_m", "hi", "hello", 3, 5, 0.1, 0.01, 50.0, {"kld": 0.1})
    store.finish_experiment(exp, {"fastest": "demo-q4_k_m"})
    other = store.start_experiment("benchmark", ["demo-hf"], {})
    store.finish_experiment(other, {}, failed=True)
    assert [e["id"] for e in store.experiments(model="demo-f16")] == [exp]
    assert [e["id"] for e in store.experiments(kind="benchmark")] == [other]
    assert store.experiments(status="failed")[0]["id"] == other
    assert store.experiments(kind="compare")[0]["summary"] == {"fastest": "demo-q4_k_m"}
    assert store.results(exp)[0]["metrics"] == {"kld": 0.1}
    store.record_request("demo-q4_k_m", "/v1/chat/completions", 10, 20, 0.5)
    store.record_request("demo-q4_k_m", "/api/chat", 5, 5, 0.3)
    stats = store.statistics()
    assert stats["models_seen"] == 7 and stats["experiments"] == 2 and stats["results"] == 1
    assert stats["per_model"] == [{"model": "demo-q4_k_m", "requests": 2, "prompt_tokens": 15,
                                   "completion_tokens": 25, "mean_latency_s": pytest.approx(0.4)}]
    with pytest.raises(sqlite3.IntegrityError):
        store.add_result(999, "x", "y")  # no such experiment: refused, nothing written
    assert store.statistics()["results"] == 1
    # One model's history: its experiments, their results, its requests; another model's count none of them.
    store.record_request("demo-f16", "/api/chat", 1, 2, 0.2)
    of_f16 = store.statistics("demo-f16")
    assert (of_f16["model"], of_f16["models_seen"], of_f16["experiments"], of_f16["results"]) == ("demo-f16", 1, 1, 1)
    assert of_f16["requests"] == 1 and [row["model"] for row in of_f16["per_model"]] == ["demo-f16"]
    of_hf = store.statistics("demo-hf")
    assert (of_hf["experiments"], of_hf["results"], of_hf["requests"], of_hf["per_model"]) == (1, 0, 0, [])
    assert store.statistics("nothing-of-that-name")["experiments"] == 0
    store.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    store = Store(tmp_path / "lqmf.db")

    def write(n: int) -> None:
        for i in range(50):
            store.record_request(f"m{n}", "/x", i, i, 0.01)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.statistics()["requests"] == 400
    store.close()


def test_a_killed_experiment_is_marked_incomplete(tmp_path):
    path = tmp_path / "lqmf.db"
    script = (
        "import sys, time, pathlib\n"
        "from memory.store import Store\n"
        "s = Store(pathlib.Path(sys.argv[1]))\n"
        "e = s.start_experiment('batch', ['demo-q4_k_m'], {})\n"
        "for i in range(3):\n"
        "    s.add_result(e, 'demo-q4_k_m', f'p{i}', 'r')\n"
        "print(e, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    experiment = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    store = Store(path)
    assert store.recovered == 1 and intact(path)
    (row,) = store.experiments()
    assert row["id"] == experiment and row["status"] == "incomplete" and len(store.results(experiment)) == 3
    running = store.start_experiment("single", ["m"], {})  # our own live run is left alone
    assert Store(path).recovered == 0 and store.experiments(status="running")[0]["id"] == running
    store.close()


def test_text_and_json_come_back_exactly(tmp_path):
    store = Store(tmp_path / "lqmf.db")
    prompt, params = "a, \"quoted\"\nprompt ✓", {"stop": ["\n\n"], "t": 0}
    exp = store.start_experiment("single", ["demo-q4_k_m"], params)
    store.add_result(exp, "demo-q4_k_m", prompt, "b", metrics={"kld": [0.1, None]})
    store.close()
    store = Store(tmp_path / "lqmf.db")  # from the file, not from anything the first store kept
    (row,) = store.results(exp)
    assert (row["prompt"], row["response"], row["metrics"]) == (prompt, "b", {"kld": [0.1, None]})
    assert row["experiment_id"] == exp and store.experiment(exp)["params"] == params
    store.close()


def test_a_database_from_before_the_factory_is_upgraded_in_place(tmp_path):
    """A database that only had m001 gains the quantization measures; its rows stay as they were."""
    db = sqlite3.connect(tmp_path / "old.db")
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    db.executescript(MIGRATIONS[0][1])
    db.execute("INSERT INTO schema_migrations VALUES ('m001_initial', 0)")
    db.execute("INSERT INTO quantization_runs (source, output, method, status, pid, started_at) "
               "VALUES ('a', 'b', 'gguf', 'done', 1, 5.0)")
    db.commit()
    db.close()
    store = Store(tmp_path / "old.db")
    assert store.migrations() == [name for name, _ in MIGRATIONS]
    (old,) = store.quantization_runs()
    assert (old["source"], old["status"], old["plan"], old["wall_time_s"]) == ("a", "done", None, None)
    run = store.start_quantization("src", "out", "bnb", "nf4", 4, {"steps": ["x"]})
    store.finish_quantization(run, "done", manifest={"name": "out"}, wall_time_s=1.5, peak_rss_bytes=10)
    new = store.quantization_runs(method="bnb")[0]
    assert (new["plan"], new["manifest"], new["wall_time_s"], new["peak_rss_bytes"]) == (
        {"steps": ["x"]}, {"name": "out"}, 1.5, 10)
    with pytest.raises(ValueError):
        store.finish_quantization(run, "finished")
    store.close()


def test_a_failed_commit_rolls_back_and_the_next_write_works(tmp_path):
    """A real COMMIT failure (a deferred foreign key checked only at COMMIT) must not wedge the store."""
    from memory.store import CommitFailed

    path = tmp_path / "lqmf.db"
    store = Store(path)
    outside = sqlite3.connect(path, timeout=1)
    # Another connection arms the fault: a 'poison' request also writes a row whose deferred
    # foreign key points nowhere, so each statement succeeds and only COMMIT fails.
    outside.executescript("""
        CREATE TABLE audit (experiment_id INTEGER REFERENCES experiments(id) DEFERRABLE INITIALLY DEFERRED);
        CREATE TRIGGER poison AFTER INSERT ON request_stats WHEN NEW.model = 'poison'
        BEGIN INSERT INTO audit VALUES (424242); END;
    """)
    store.record_request("before", "/x", 1, 1, 0.1)
    with pytest.raises(CommitFailed, match="could not save a write .*FOREIGN KEY.*rolled back") as failed:
        store.record_request("poison", "/x", 2, 2, 0.2)
    assert isinstance(failed.value.cause, sqlite3.IntegrityError)
    store.record_request("after", "/x", 3, 3, 0.3)  # the store's own next write
    outside.execute("INSERT INTO request_stats (model, route, prompt_tokens, completion_tokens, latency_s, "
                    "created_at) VALUES ('outside', '/x', 4, 4, 0.4, 0)")  # the write lock was released
    outside.commit()
    assert sorted(row["model"] for row in store.statistics()["per_model"]) == ["after", "before", "outside"]
    assert outside.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 0  # nothing of the failed write
    assert intact(path)
    outside.close()
    store.close()


def _open_and_close(path: str, barrier) -> None:
    barrier.wait()
    Store(Path(path)).close()


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path):
    """Four processes open the same new file together, twenty times: before, one in a few rounds
    failed ("database is locked" switching to WAL, or "table models already exists" migrating)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(20):
        path = tmp_path / f"race-{round_}.db"
        barrier = context.Barrier(4)
        openers = [context.Process(target=_open_and_close, args=(str(path), barrier)) for _ in range(4)]
        for process in openers:
            process.start()
        for process in openers:
            process.join(60)
        failures += [round_ for process in openers if process.exitcode != 0]
        store = Store(path)
        assert store.migrations() == [name for name, _ in MIGRATIONS]
        store.close()
    assert failures == []


def test_a_read_in_another_thread_never_sees_a_write_that_is_rolled_back(tmp_path):
    # One connection serves every thread (one Store per process): a read must wait for an open write.
    store = Store(tmp_path / "history.db")
    inside, reads = threading.Event(), []

    def writer():
        try:
            with store._write():
                store._db.execute("INSERT INTO schema_migrations VALUES ('zz_uncommitted', 0)")
                inside.set()
                time.sleep(0.3)  # the reader asks now, while the row is not saved
                raise RuntimeError("the write fails")
        except RuntimeError as exc:
            reads.append(str(exc))

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(5)
    seen = store.migrations()
    thread.join()
    assert reads == ["the write fails"]
    assert "zz_uncommitted" not in seen and seen == store.migrations()
    store.close()
