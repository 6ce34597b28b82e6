"""Every curl example in README.md runs as written (port aside) against the real server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def readme_curls() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("curl "):
                commands.append(re.sub(r"\s+#[^']*$", "", line).strip())
    return commands


def test_readme_documents_every_endpoint(demo_dir, tmp_path):
    from lqmf.settings import Settings
    from server.app import create_app

    paths = create_app(Settings(home=tmp_path, models_dir_override=demo_dir)).openapi()["paths"]
    documented = " ".join(readme_curls())
    missing = []
    for path in paths:
        pattern = re.sub(r"\\\{[a-z_]+\\\}", r"[A-Za-z0-9_.\\-]+", re.escape(path))
        if not re.search(r"8000" + pattern + r"(['\s]|$)", documented):
            missing.append(path)
    assert missing == [], missing


@pytest.mark.parametrize("command", readme_curls())
def test_curl_example_works(command, readme_server):
    url, _ = readme_server
    proc = subprocess.run(["bash", "-c", command.replace("http://127.0.0.1:8000", url) + " -w '\\n%{http_code}'"],
                          capture_output=True, text=True, timeout=120)
    body, _, status = proc.stdout.rpartition("\n")
    assert proc.returncode == 0 and status in ("200", "201"), (command, status, body[-500:])
    if "/metrics" in command:
        assert "lqmf_requests_total" in body
    elif '"stream": true' in command or ("/api/generate" in command and '"prompt"' in command):
        assert body.strip()  # streamed lines
    else:
        json.loads(body)


@pytest.fixture(scope="module")
def readme_server(demo_dir, tmp_path_factory):
    from lqmf.settings import Settings
    from server.manager import ModelManager
    from server.runner import BackgroundServer

    settings = Settings(home=tmp_path_factory.mktemp("readme-home"), models_dir_override=demo_dir, port=0)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, manager)
    status = server.start()
    # One recorded experiment (#1), as a person's first `experiment with ...` leaves, for /experiments/1.
    from agents.measure.experiments import ExperimentAgent
    from memory.store import Store
    from server.backends.base import GenerationParams

    store = Store(settings.db_path)
    ExperimentAgent(settings, manager, store).single("demo-q4_k_m", "hello", GenerationParams(max_tokens=4))
    store.close()
    # The README's classifier, trained on a small cut of its demo data, for /classifiers/code-vs-prose.
    from agents.classifiers.train import TrainRequest, train_classifier
    from agents.demo.classify_data import make_rows, write_csv

    data = write_csv(settings.root / "code-vs-prose.csv", make_rows(per_label=20))
    train_classifier(TrainRequest("code-vs-prose", data, "demo-hf"), settings=settings, manager=manager)
    yield status.url, manager
    server.stop()
    manager.close()
