"""Acquiring models: downloads from a local fake Hub (resume, errors, GGUF levels), imports, login."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections import namedtuple
from pathlib import Path

import pytest

from agents.quantization.acquire import STAGING_PREFIX, download_model, import_model, login
from lqmf.base.errors import AccessDenied, DownloadError, InsufficientDisk, LQMFError, ModelNotFound, OutputExists
from lqmf.base.manifest import REQUIRED_KEYS, read_manifest, sha256_file, tree_sha256
from server.runtime.discovery import discover
from tests.conftest import REPO
from tests.fake_hub import COMMIT, FakeHub

HF_REPO = "lqmf-test/demo-hf"
GGUF_REPO = "lqmf-test/demo-GGUF"
TOKEN = "hf_good_token"
JUNK = {  # what real repos carry beside the safetensors: never fetched
    "pytorch_model.bin": b"\0" * 4096, "pytorch_model.bin.index.json": b"{}", "onnx/model.onnx": b"\0" * 1024,
    "README.md": b"# demo\n", ".gitattributes": b"*.safetensors filter=lfs\n",
}


@pytest.fixture
def hf_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HF_HOME. huggingface_hub reads its paths once at import, so its constants are pointed here too."""
    from huggingface_hub import constants

    folder = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setenv("HF_HOME", str(folder))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(folder / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(folder / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return folder


@pytest.fixture
def hub(demo_dir: Path, hf_home: Path, monkeypatch: pytest.MonkeyPatch):
    """The demo model as a public repo (with the usual extra files) and a two-file GGUF repo, on 127.0.0.1."""
    from huggingface_hub import hf_api

    fake = FakeHub(tokens={TOKEN}, accounts={TOKEN: "ada"})
    fake.add_folder(HF_REPO, demo_dir / "demo-hf")
    fake.repos[HF_REPO].files.update(JUNK)
    fake.add_files(GGUF_REPO, {
        "demo-q8_0.gguf": (demo_dir / "demo-q8_0.gguf").read_bytes(),
        "demo-q4_k_m.gguf": (demo_dir / "demo-q4_k_m.gguf").read_bytes(),
        "README.md": b"# demo GGUF\n",
    })
    fake.start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    # huggingface_hub.login checks the token with a client built at import, on the endpoint of that moment
    # (its URL templates too, so constants.ENDPOINT stays as imported).
    monkeypatch.setattr(hf_api.api, "endpoint", fake.url)
    yield fake
    fake.stop()


@pytest.fixture
def settings(home: Path):
    from lqmf.base.settings import load_settings

    return load_settings()


def downloads(hub: FakeHub, since: int = 0) -> list[str]:
    """Files fetched (GET on resolve URLs) since request number `since`."""
    return [path.rsplit("/", 1)[-1] for method, path, _ in hub.requests[since:]
            if method == "GET" and "/resolve/" in path]


def assert_nothing_left(models_dir: Path) -> None:
    assert discover(models_dir) == []
    assert not models_dir.exists() or [p.name for p in models_dir.iterdir()] == []


# -- downloads -----------------------------------------------------------------------------------------


def test_download_lands_as_a_usable_hf_model_with_a_manifest(hub, settings, demo_dir):
    seen: list[tuple[str, int, int]] = []
    got = download_model(HF_REPO, settings, progress=lambda what, done, total: seen.append((what, done, total)))

    assert (got.name, got.format, got.source, got.revision, got.already_present) == \
        ("demo-hf", "hf", HF_REPO, COMMIT, False)
    assert got.path == settings.models_dir / "demo-hf"
    records = {r.name: r for r in discover(settings.models_dir)}
    assert list(records) == ["demo-hf"] and records["demo-hf"].usable and records["demo-hf"].format == "hf"
    wanted = sorted(p.name for p in (demo_dir / "demo-hf").iterdir() if p.name != "lqmf.json")
    assert sorted(p.name for p in got.path.iterdir()) == sorted(wanted + ["lqmf.json"])  # no .cache, no junk
    assert got.files == len(wanted)
    for name in wanted:
        assert (got.path / name).read_bytes() == (demo_dir / "demo-hf" / name).read_bytes()
    assert not any(name in downloads(hub) for name in ("pytorch_model.bin", "model.onnx", "README.md"))

    manifest = read_manifest(got.path)
    assert set(REQUIRED_KEYS) <= set(manifest)
    assert manifest["method"] == "download" and manifest["format"] == "hf" and manifest["name"] == "demo-hf"
    assert (manifest["bits"], manifest["level"]) == (32.0, "f32")  # config.json says float32
    assert manifest["source"]["hub"] == HF_REPO and manifest["source"]["revision"] == COMMIT
    assert manifest["source"]["endpoint"] == hub.url
    assert manifest["source"]["path"] == f"hf://{HF_REPO}@{COMMIT}"
    weights = demo_dir / "demo-hf" / "model.safetensors"
    assert manifest["weight_files"] == [{"path": "model.safetensors", "size_bytes": weights.stat().st_size,
                                         "sha256": sha256_file(weights)}]
    assert manifest["parameter_count"] > 0 and got.size_bytes == manifest["size_bytes"]

    assert seen and seen[-1][1] == seen[-1][2] == sum((demo_dir / "demo-hf" / n).stat().st_size for n in wanted)
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)


def test_a_dropped_connection_resumes_with_a_range_request(hub, settings, demo_dir):
    # huggingface_hub writes in 10 MiB chunks: a resume point exists only once the first one is on disk.
    assert (demo_dir / "demo-hf" / "model.safetensors").stat().st_size > 12 << 20
    hub.cut_after["model.safetensors"] = 12 << 20
    got = download_model(HF_REPO, settings)
    ranges = [rng for method, path, rng in hub.requests
              if method == "GET" and path.endswith("/model.safetensors") and rng]
    assert ranges and int(ranges[0].removeprefix("bytes=").rstrip("-")) > 0
    assert (got.path / "model.safetensors").read_bytes() == (demo_dir / "demo-hf" / "model.safetensors").read_bytes()


def test_an_interrupted_download_keeps_its_finished_files_and_goes_on_from_them(hub, settings, demo_dir):
    hub.fail_get["tokenizer.json"] = 500
    with pytest.raises(DownloadError) as failed:
        download_model(HF_REPO, settings)
    assert "500" in failed.value.message and "again" in failed.value.hint
    assert discover(settings.models_dir) == []  # only the hidden staging folder is there
    staging = settings.models_dir / f"{STAGING_PREFIX}demo-hf"
    assert [p.name for p in settings.models_dir.iterdir()] == [staging.name]
    assert (staging / "model.safetensors").is_file()

    before = len(hub.requests)
    got = download_model(HF_REPO, settings)
    assert downloads(hub, before) == ["tokenizer.json"]
    assert not staging.exists()
    assert tree_sha256(got.path) == tree_sha256(demo_dir / "demo-hf")  # manifests left out of both


def test_a_second_download_is_already_present(hub, settings):
    first = download_model(HF_REPO, settings)
    before = len(hub.requests)
    again = download_model(HF_REPO, settings)
    assert again.already_present and again.path == first.path and again.revision == COMMIT
    assert downloads(hub, before) == []
    assert all(path.startswith("/api/") for _, path, _ in hub.requests[before:])


def test_a_name_taken_by_something_else_is_refused_with_the_way_out(hub, settings, demo_dir):
    shutil.copytree(demo_dir / "demo-hf", settings.models_dir / "demo-hf")
    with pytest.raises(OutputExists) as taken:
        download_model(HF_REPO, settings)
    assert "demo-hf" in taken.value.message and f"download {HF_REPO} as demo-hf-2" in taken.value.hint
    got = download_model(HF_REPO, settings, name="demo-hf-from-hub")
    assert got.path.name == "demo-hf-from-hub" and not got.already_present

    manifest_path = got.path / "lqmf.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["source"]["revision"] = "f" * 40  # as if downloaded before the repo moved on
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(OutputExists, match="older commit"):
        download_model(HF_REPO, settings, name="demo-hf-from-hub")


def test_the_tree_listing_is_followed_over_pages(hub, settings):
    hub.page_size = 2
    got = download_model(HF_REPO, settings)
    assert sum(1 for m, path, _ in hub.requests if m == "GET" and "/tree/" in path) >= 4
    assert (got.path / "tokenizer_config.json").is_file() and (got.path / "model.safetensors").is_file()


def test_a_gguf_repo_needs_a_level_and_gets_the_right_file(hub, settings, demo_dir):
    with pytest.raises(DownloadError) as which:
        download_model(GGUF_REPO, settings)
    assert "demo-q8_0.gguf" in which.value.message and "demo-q4_k_m.gguf" in which.value.message
    assert f"download {GGUF_REPO} q" in which.value.hint
    with pytest.raises(DownloadError, match="no GGUF file .* matches level 'q5_k_m'"):
        download_model(GGUF_REPO, settings, level="q5_k_m")
    assert downloads(hub) == []

    got = download_model(GGUF_REPO, settings, level="Q4_K_M")
    assert (got.name, got.format, got.files, got.revision) == ("demo-q4_k_m.gguf", "gguf", 1, COMMIT)
    assert downloads(hub) == ["demo-q4_k_m.gguf"]
    assert got.path.read_bytes() == (demo_dir / "demo-q4_k_m.gguf").read_bytes()
    records = {r.name: r for r in discover(settings.models_dir)}
    assert list(records) == ["demo-q4_k_m"]
    assert records["demo-q4_k_m"].usable and (records["demo-q4_k_m"].format, records["demo-q4_k_m"].level) == \
        ("gguf", "q4_k_m")
    manifest = read_manifest(got.path)
    assert set(REQUIRED_KEYS) <= set(manifest)
    assert (manifest["method"], manifest["level"], manifest["bits"]) == ("download", "q4_k_m", 4.0)
    assert manifest["source"]["hub"] == GGUF_REPO and manifest["source"]["revision"] == COMMIT
    assert manifest["weight_files"][0]["sha256"] == sha256_file(demo_dir / "demo-q4_k_m.gguf")
    assert [p.name for p in settings.models_dir.iterdir() if p.name.startswith(".")] == []

    named = download_model(GGUF_REPO, settings, level="q8_0", name="tiny")
    assert named.path == settings.models_dir / "tiny.gguf" and read_manifest(named.path)["level"] == "q8_0"


def test_a_repo_without_safetensors_or_gguf_is_refused_before_downloading(hub, settings):
    hub.add_files("lqmf-test/old-style", {"config.json": b"{}", "pytorch_model.bin": b"\0" * 64})
    with pytest.raises(DownloadError, match="only safetensors or GGUF") as refused:
        download_model("lqmf-test/old-style", settings)
    assert "pytorch_model.bin" in refused.value.message
    assert downloads(hub) == []
    assert_nothing_left(settings.models_dir)


def test_a_level_on_a_repo_without_gguf_files_is_refused(hub, settings):
    with pytest.raises(DownloadError, match="no GGUF files") as refused:
        download_model(HF_REPO, settings, level="q4_k_m")
    assert "without a level" in refused.value.hint and "quantize" in refused.value.hint
    assert downloads(hub) == []


@pytest.mark.parametrize("bad", ["not a repo!!", "a/b/c", "", "../etc"])
def test_a_bad_repo_id_says_what_one_looks_like(hub, settings, bad):
    with pytest.raises(DownloadError) as refused:
        download_model(bad, settings)
    assert "Qwen/Qwen2.5-0.5B-Instruct" in refused.value.hint
    assert hub.requests == []


def test_a_missing_repo_is_not_found_with_hints(hub, settings):
    with pytest.raises(DownloadError) as missing:
        download_model("lqmf-test/no-such-model", settings)
    assert type(missing.value) is DownloadError
    assert "not found" in missing.value.message and "private" in missing.value.message
    assert "spelling" in missing.value.hint and "login" in missing.value.hint
    assert_nothing_left(settings.models_dir)


def test_a_private_repo_needs_a_token(hub, settings, demo_dir, monkeypatch):
    hub.add_folder("lqmf-test/private", demo_dir / "demo-hf", private=True)
    with pytest.raises(DownloadError) as hidden:
        download_model("lqmf-test/private", settings)
    assert "private" in hidden.value.message and "login" in hidden.value.hint and "HF_TOKEN" in hidden.value.hint
    assert_nothing_left(settings.models_dir)

    monkeypatch.setenv("HF_TOKEN", TOKEN)  # huggingface_hub finds the token itself
    got = download_model("lqmf-test/private", settings)
    assert got.path.name == "private" and discover(settings.models_dir)[0].usable


def test_a_wrong_token_is_refused_with_how_to_make_a_new_one(hub, settings, monkeypatch):
    with pytest.raises(AccessDenied) as refused:
        download_model(HF_REPO, settings, token="hf_wrong")
    assert "refused the token given" in refused.value.message
    assert f"{hub.url}/settings/tokens" in refused.value.hint and "login" in refused.value.hint
    assert_nothing_left(settings.models_dir)

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(AccessDenied) as from_env:
        download_model(HF_REPO, settings)
    assert "HF_TOKEN" in from_env.value.message and "unset" in from_env.value.hint


def test_a_gated_repo_says_where_to_accept_the_licence(hub, settings, demo_dir):
    hub.add_folder("lqmf-test/gated", demo_dir / "demo-hf", gated=True)
    page = f"{hub.url}/lqmf-test/gated"
    with pytest.raises(AccessDenied) as anonymous:  # 401 GatedRepo: no token at all
        download_model("lqmf-test/gated", settings)
    assert page in anonymous.value.message and "licence" in anonymous.value.message
    assert "login" in anonymous.value.hint and "HF_TOKEN" in anonymous.value.hint
    assert_nothing_left(settings.models_dir)

    with pytest.raises(AccessDenied) as not_accepted:  # 403 GatedRepo: a token whose account has not accepted
        download_model("lqmf-test/gated", settings, token=TOKEN)
    assert page in not_accepted.value.message and "login" in not_accepted.value.hint
    assert_nothing_left(settings.models_dir)

    hub.gated_access.add(TOKEN)
    assert download_model("lqmf-test/gated", settings, token=TOKEN).path.is_dir()


def test_an_unknown_revision_is_named(hub, settings):
    with pytest.raises(DownloadError, match="no revision 'v9'") as missing:
        download_model(HF_REPO, settings, revision="v9")
    assert "branch, tag or commit" in missing.value.hint
    assert download_model(HF_REPO, settings, revision=COMMIT).revision == COMMIT


def test_an_unreachable_hub_names_the_endpoint(hf_home, settings, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    started = time.monotonic()
    with pytest.raises(DownloadError) as offline:
        download_model(HF_REPO, settings)
    assert endpoint in offline.value.message and "HF_ENDPOINT" in offline.value.hint
    assert time.monotonic() - started < 10
    assert_nothing_left(settings.models_dir)


def test_not_enough_disk_is_refused_before_downloading(hub, settings, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, 1 << 30, 1024))
    with pytest.raises(InsufficientDisk):
        download_model(HF_REPO, settings)
    assert downloads(hub) == []
    assert_nothing_left(settings.models_dir)


# -- login ---------------------------------------------------------------------------------------------


def test_login_stores_the_token_in_hf_home_only(hub, hf_home, settings, demo_dir):
    assert login(TOKEN, settings) == "ada"
    assert (hf_home / "token").read_text() == TOKEN
    assert TOKEN in (hf_home / "stored_tokens").read_text()
    assert not (hf_home / "token").resolve().is_relative_to(REPO)
    assert not any(TOKEN.encode() in p.read_bytes() for p in settings.root.rglob("*") if p.is_file())

    hub.add_folder("lqmf-test/private", demo_dir / "demo-hf", private=True)
    assert download_model("lqmf-test/private", settings).path.is_dir()  # the saved token is used


def test_login_refuses_a_wrong_token_and_saves_nothing(hub, hf_home, settings):
    with pytest.raises(AccessDenied) as refused:
        login("hf_wrong", settings)
    assert "settings/tokens" in refused.value.hint
    with pytest.raises(AccessDenied):
        login("  ", settings)
    assert not (hf_home / "token").exists() and not (hf_home / "stored_tokens").exists()


def test_login_refuses_a_token_store_inside_the_project(hub, settings, monkeypatch):
    from huggingface_hub import constants

    inside = REPO / "quantized-models" / "hf" / "token"
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(inside))
    with pytest.raises(LQMFError, match="inside") as refused:
        login(TOKEN, settings)
    assert "HF_HOME" in refused.value.hint
    assert not inside.parent.exists()


# -- imports -------------------------------------------------------------------------------------------


def test_import_an_hf_folder(settings, demo_dir):
    seen: list[int] = []
    src = demo_dir / "demo-hf"
    got = import_model(src, settings, progress=lambda what, done, total: seen.append(done))
    assert (got.name, got.format, got.source, got.revision, got.already_present) == \
        ("demo-hf", "hf", str(src.resolve()), None, False)
    record = discover(settings.models_dir)[0]
    assert record.name == "demo-hf" and record.usable and record.format == "hf"
    manifest = read_manifest(got.path)
    assert set(REQUIRED_KEYS) <= set(manifest) and manifest["method"] == "import"
    assert manifest["source"]["path"] == str(src.resolve()) and manifest["source"]["sha256"] == tree_sha256(src)
    assert (got.path / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert seen[-1] == sum(p.stat().st_size for p in src.iterdir() if p.name != "lqmf.json")

    with pytest.raises(OutputExists, match="already exists") as taken:
        import_model(src, settings)
    assert "another name" in taken.value.hint
    assert import_model(src, settings, name="demo-copy").path.is_dir()


def test_import_a_gguf_file(settings, demo_dir):
    src = demo_dir / "demo-q8_0.gguf"
    got = import_model(src, settings, name="tiny-q8")
    assert (got.name, got.format, got.files) == ("tiny-q8.gguf", "gguf", 1)
    record = discover(settings.models_dir)[0]
    assert (record.name, record.format, record.level, record.usable) == ("tiny-q8", "gguf", "q8_0", True)
    manifest = read_manifest(got.path)
    assert set(REQUIRED_KEYS) <= set(manifest) and manifest["method"] == "import"
    assert manifest["source"] == {"path": str(src.resolve()), "format": "gguf", "sha256": sha256_file(src)}
    assert got.path.read_bytes() == src.read_bytes()


def test_import_refuses_what_is_not_a_model(settings, tmp_path):
    with pytest.raises(ModelNotFound, match="nothing at"):
        import_model(tmp_path / "missing", settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="config.json"):
        import_model(tmp_path / "empty", settings)
    (tmp_path / "notes.gguf").write_text("hello")
    with pytest.raises(ModelNotFound, match="GGUF"):
        import_model(tmp_path / "notes.gguf", settings)
    assert_nothing_left(settings.models_dir)


def test_import_refuses_when_the_disk_is_too_small(settings, demo_dir, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, 1 << 30, 1024))
    with pytest.raises(InsufficientDisk, match="demo-q8_0.gguf"):
        import_model(demo_dir / "demo-q8_0.gguf", settings)
    assert_nothing_left(settings.models_dir)
