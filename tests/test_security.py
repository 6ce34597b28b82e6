"""Cross-site and DNS-rebinding protection: raw requests with forged Origin and Host headers against a real server."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from lqmf.api import Library
from lqmf.base.settings import Settings, load_settings
from server.http.runner import BackgroundServer
from server.http.security import CrossSitePolicy, OllamaContentTypeMiddleware
from server.runtime.manager import ModelManager

FOREIGN = "http://evil.example"
GENERATE = {"model": "demo-q8_0", "prompt": "def f(x):", "stream": False, "options": {"num_predict": 2}}


def _serve(settings: Settings):
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    return server, manager, server.start().url


@pytest.fixture(scope="module")
def served(demo_dir, tmp_path_factory):
    server, manager, url = _serve(Settings(home=tmp_path_factory.mktemp("security-home"),
                                           models_dir_override=demo_dir, port=0))
    yield url, manager
    server.stop()
    manager.close()


def _loaded(http) -> set[str]:
    return {m["name"] for m in http.get("/models").json()["models"]}


def _port(http) -> int:
    return http.base_url.port


def _unload(http, name: str) -> None:
    http.post(f"/models/{name}/unload")
    assert name not in _loaded(http)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/x-www-form-urlencoded"])
def test_foreign_origin_cannot_generate_whatever_the_content_type(http, content_type):
    body = json.dumps(GENERATE)
    assert "demo-q8_0" not in _loaded(http)
    refused = http.post("/api/generate", content=body, headers={"content-type": content_type, "origin": FOREIGN})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]  # Ollama's shape under /api/: one string, the hint included
    assert isinstance(error, str) and FOREIGN in error and "LQMF_ORIGINS" in error
    assert "access-control-allow-origin" not in refused.headers
    assert "demo-q8_0" not in _loaded(http)  # refused before anything ran
    # The same bytes from curl (no Origin) keep Ollama's any-content-type convenience.
    plain = http.post("/api/generate", content=body, headers={"content-type": content_type})
    assert plain.status_code == 200 and plain.json()["done"] is True, plain.text
    _unload(http, "demo-q8_0")


def test_foreign_origin_with_no_body_is_refused_before_the_route(http):
    refused = http.post("/api/generate", headers={"origin": FOREIGN})
    assert refused.status_code == 403 and "LQMF_ORIGINS" in refused.json()["error"]
    for path in ("/models/demo-q4_k_m/load", "/models/demo-q4_k_m/unload", "/v1/chat/completions", "/compare"):
        assert http.post(path, headers={"origin": "https://localhost.evil.example"}).status_code == 403, path
    assert "demo-q4_k_m" not in _loaded(http)
    assert http.post("/api/generate").status_code == 422  # without an Origin it reaches validation


def test_foreign_host_is_refused_but_loopback_names_and_health_are_not(http):
    port = _port(http)
    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}", f"10.0.0.7:{port}"):
        refused = http.post("/api/generate", json=GENERATE, headers={"host": host})
        assert refused.status_code == 403, (host, refused.text)
        assert "LQMF_ALLOWED_HOSTS" in refused.json()["error"]
    # A rebound page is same-origin with its own name: that must not count as an allowed Origin.
    rebound = http.post("/api/generate", json=GENERATE,
                        headers={"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"})
    assert rebound.status_code == 403
    assert "demo-q8_0" not in _loaded(http)
    assert http.get("/api/tags", headers={"host": f"evil.example:{port}"}).status_code == 403
    assert http.get("/health", headers={"host": f"evil.example:{port}"}).status_code == 200  # probes
    for host in (f"localhost:{port}", f"LOCALHOST.:{port}", f"127.0.0.1:{port}", f"127.9.8.7:{port}",
                 f"[::1]:{port}", "localhost", f"app.localhost:{port}"):
        assert http.get("/api/tags", headers={"host": host}).status_code == 200, host


def test_allowed_origin_works_and_gets_cors_headers(http):
    origin = "http://localhost:3000"
    response = http.post("/api/generate", json=GENERATE, headers={"origin": origin})
    assert response.status_code == 200 and response.json()["done"] is True, response.text
    assert response.headers["access-control-allow-origin"] == origin
    _unload(http, "demo-q8_0")
    preflight = http.options("/v1/chat/completions", headers={
        "origin": origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == origin
    foreign = http.options("/v1/chat/completions", headers={
        "origin": FOREIGN, "access-control-request-method": "POST", "access-control-request-headers": "content-type"})
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    # The docs page is same-origin with whatever allowed name it was opened by.
    port = _port(http)
    same = http.get("/api/tags", headers={"origin": f"http://127.0.0.1:{port}"})
    assert same.status_code == 200


def test_refusals_are_counted_in_metrics(http):
    def refused_count() -> float:
        total = 0.0
        for line in http.get("/metrics").text.splitlines():
            if line.startswith("lqmf_requests_total{") and 'status="403"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = refused_count()
    http.post("/api/generate", json=GENERATE, headers={"origin": FOREIGN})
    http.get("/api/tags", headers={"host": "evil.example"})
    assert refused_count() == before + 2


def test_allowed_hosts_and_origins_extend_the_lists(demo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LQMF_ALLOWED_HOSTS", "models.lan, *.example.lan")
    monkeypatch.setenv("LQMF_ORIGINS", '["https://app.example.com", "http://*.dev.example:*"]')
    settings = load_settings().model_copy(update={"models_dir_override": demo_dir, "home": tmp_path, "port": 0})
    assert settings.allowed_hosts == ["models.lan", "*.example.lan"]
    server, manager, url = _serve(settings)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            port = _port(http)
            for host in (f"models.lan:{port}", "gpu.example.lan", f"localhost:{port}"):
                assert http.get("/api/tags", headers={"host": host}).status_code == 200, host
            for host in ("other.lan", "example.lan.evil.example", "models.lan.evil.example"):
                assert http.get("/api/tags", headers={"host": host}).status_code == 403, host
            for origin in ("https://app.example.com", "http://web.dev.example:5173", "http://localhost:3000"):
                response = http.post("/api/show", json={"model": "demo-q8_0"}, headers={"origin": origin})
                assert response.status_code == 200, (origin, response.text)
                assert response.headers["access-control-allow-origin"] == origin
            for origin in ("http://app.example.com", "https://app.example.com.evil.example", "https://dev.example",
                           FOREIGN, "null"):
                refused = http.post("/api/show", json={"model": "demo-q8_0"}, headers={"origin": origin})
                assert refused.status_code == 403, origin
    finally:
        server.stop()
        manager.close()


def test_settings_read_both_list_forms_and_the_old_cors_name(monkeypatch, home):
    monkeypatch.setenv("LQMF_CORS_ORIGINS", '["https://old.example"]')
    assert load_settings().origins == ["https://old.example"]
    monkeypatch.setenv("LQMF_ORIGINS", "https://a.example,https://b.example")
    assert load_settings().origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("LQMF_ALLOWED_HOSTS", "[1, 2]")
    with pytest.raises(ValueError, match="list of strings"):
        load_settings()


def test_star_turns_each_check_off():
    strict = CrossSitePolicy.build("127.0.0.1", [], [])
    assert not strict.host_allowed("evil.example", "127.0.0.1")
    assert not strict.origin_allowed(FOREIGN, "127.0.0.1:8000")
    assert strict.cors_options()["allow_origins"] == []
    open_ = CrossSitePolicy.build("127.0.0.1", ["*"], ["*"])
    assert open_.host_allowed("evil.example", "127.0.0.1") and open_.origin_allowed(FOREIGN, "127.0.0.1:8000")
    assert open_.cors_options() == {"allow_origins": ["*"]}


def test_a_network_bind_answers_to_its_addresses_but_not_to_foreign_names():
    policy = CrossSitePolicy.build("0.0.0.0", [], [])
    # Over the network (LAN clients, NAT, container port maps) any address is fine: an address cannot be rebound.
    assert policy.host_allowed("192.168.1.5:8000", "192.168.1.5")
    assert policy.host_allowed("203.0.113.9:8000", "172.17.0.2")
    assert policy.host_allowed("[fd00::5]:8000", "fd00::5")
    assert not policy.host_allowed("evil.example:8000", "192.168.1.5")
    # Over loopback only loopback addresses: nothing legitimate names us by another address there.
    assert not policy.host_allowed("192.168.1.5:8000", "127.0.0.1")
    named = CrossSitePolicy.build("gpu-box.lan", [], [])
    assert named.host_allowed("GPU-BOX.lan:8000", "192.168.1.5")


def _network_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_a_real_network_bind_checks_the_address_each_request_came_in_on(demo_dir, tmp_path):
    address = _network_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    settings = Settings(home=tmp_path, models_dir_override=demo_dir, port=0, api_key="k")
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    try:
        port = server.start(host="0.0.0.0").port
        key = {"authorization": "Bearer k"}
        with httpx.Client(base_url=f"http://{address}:{port}", timeout=30) as http:
            assert http.get("/api/tags", headers=key).status_code == 200  # Host: its own address
            assert http.get("/api/tags", headers={**key, "host": f"203.0.113.9:{port}"}).status_code == 200  # NAT
            assert http.get("/api/tags", headers={**key, "host": f"evil.example:{port}"}).status_code == 403
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.get("/api/tags", headers={**key, "host": f"{address}:{port}"}).status_code == 403
    finally:
        server.stop()
        manager.close()


def test_content_type_is_not_laundered_for_a_foreign_page():
    seen: list[bytes | None] = []

    async def inner(scope, receive, send):
        seen.append(dict(scope["headers"]).get(b"content-type"))

    policy = CrossSitePolicy.build("127.0.0.1", [], [])
    middleware = OllamaContentTypeMiddleware(inner, policy)

    def call(origin: str | None) -> bytes | None:
        headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"text/plain")]
        if origin:
            headers.append((b"origin", origin.encode()))
        scope = {"type": "http", "path": "/api/generate", "method": "POST", "headers": headers}
        asyncio.run(middleware(scope, None, None))
        return seen[-1]

    assert call(None) == b"application/json"  # curl -d
    assert call("http://localhost:3000") == b"application/json"  # an allowed page
    assert call(FOREIGN) == b"text/plain"  # a foreign page: its text/plain stays text/plain, and fails validation
