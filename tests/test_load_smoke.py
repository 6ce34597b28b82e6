"""The load and soak test (benchmarks/load_test.py) in its --quick mode, against the real server process."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.load_test import MIX, Outcome, Report, Resources, _judge
from tests.conftest import REPO


def test_quick_load_run_passes(demo_dir, tmp_path):
    out = tmp_path / "load.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/load_test.py", "--quick", "--models-dir", str(demo_dir), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["passed"] and not report["failures"]
    assert set(report["by_kind"]) == set(MIX)  # every kind of request was sent
    for kind, counts in report["by_kind"].items():
        expected = {"404", "405", "413", "422"} if kind == "bad_body" else {"200"}
        assert set(counts) & expected, (kind, counts)
    assert report["server_cancelled_generations"] > 0  # dropped streams were noticed and stopped
    before, after = report["before"], report["after"]
    assert after["threads"] <= before["threads"] and after["fds"] <= before["fds"]
    assert after["children"] <= before["children"]
    assert "PASS" in run.stdout and "p95 s" in run.stdout


def test_the_verdict_catches_bad_statuses_and_leaks():
    report = Report(1.0, 1, ["m"], mix={"listing": 1, "bad_body": 1})
    report.outcomes = [Outcome("listing", "/api/ps", 200, 0.01),
                       Outcome("bad_body", "POST /v1/chat/completions", 500, 0.01, "expected [422], got 500")]
    report.before, report.after = Resources(9, 13, 0, 1), Resources(12, 13, 1, 2)
    _judge(report)
    assert not report.passed
    text = "\n".join(report.failures)
    assert "expected [422], got 500" in text and "leaked threads: 9 before, 12 after" in text
    assert "leaked children" in text and "leaked fds" not in text

    clean = Report(1.0, 1, ["m"], mix={"listing": 1})
    clean.outcomes = [Outcome("listing", "/api/ps", 200, 0.01)]
    clean.before = clean.after = Resources(9, 13, 0, 1)
    _judge(clean)
    assert clean.passed
