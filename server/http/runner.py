"""The server in a background thread (what the shell's "start server" runs) or in the foreground."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from lqmf.base.errors import LQMFError
from lqmf.base.settings import Settings
from server.http.security import check_bind

if TYPE_CHECKING:
    from lqmf.api import Library

log = logging.getLogger(__name__)


class ServerStartError(LQMFError):
    """The server did not come up."""


GRACEFUL_SHUTDOWN_S = 5


def make_server(app, host: str, port: int):
    """A uvicorn server for `app` that, when told to stop (SIGTERM, Ctrl-C, stop()), first ends every
    generation in flight with an error event, so streams close at once and the port is freed quickly."""
    import uvicorn

    from lqmf.base.errors import ShuttingDown

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            ended = app.state.in_flight.abort_all(
                ShuttingDown("the server is shutting down", "send the request again when it is back"))
            if ended:
                log.info("shutting down: ended %d request(s) in flight", ended)
            await super().shutdown(sockets)

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, log_config=None)
    return _Server(config)


@dataclass
class ServerStatus:
    running: bool
    host: str = ""
    port: int = 0
    uptime_s: float = 0.0
    url: str = ""
    loaded_models: Optional[list[dict[str, Any]]] = None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class BackgroundServer:
    """uvicorn in a thread over a shared library (the shell's: one manager, one history store); start() returns
    once /health answers."""

    def __init__(self, settings: Settings, library: "Library") -> None:
        self.settings = settings
        self.library = library
        self._server = None
        self._thread: Optional[threading.Thread] = None
        self._started_at = 0.0
        self.host = ""
        self.port = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, host: Optional[str] = None, port: Optional[int] = None, timeout_s: float = 30.0) -> ServerStatus:
        """Start serving; raise ServerStartError with the reason when it cannot."""
        from server.http.app import create_app

        if self.running:
            return self.status()
        host = host or self.settings.host
        port = self.settings.port if port is None else port
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
        check_bind(host, key, self.settings.allow_insecure_bind)
        if port and not _port_free(host, port):
            raise ServerStartError(f"port {port} on {host} is already in use",
                                   "stop whatever uses it, or start the server on another port")
        # The Host check allows the bound name, so the app must see the host actually bound.
        app = create_app(self.settings.model_copy(update={"host": host}), self.library)
        self._server = make_server(app, host, port)
        self._thread = threading.Thread(target=self._server.run, name="lqmf-api-server", daemon=True)
        self._started_at = time.time()
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._server.started and self._server.servers:
                sock = self._server.servers[0].sockets[0]
                self.host, self.port = host, sock.getsockname()[1]
                if self._healthy():
                    log.info("API server on http://%s:%s", self.host, self.port)
                    return self.status()
            if not self._thread.is_alive():
                break
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(f"the API server did not answer /health on {host}:{port} within {timeout_s:.0f}s",
                               "see logs/lqmf.log")

    def _healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://{self._url_host()}:{self.port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop serving and free the port; False when it was not running."""
        server, thread = self._server, self._thread  # locals: a second stop() may run at the same time
        if server is None or thread is None:
            return False
        server.should_exit = True
        thread.join(timeout_s)
        stopped = not thread.is_alive()
        self._server = self._thread = None
        log.info("API server stopped")
        return stopped

    def status(self) -> ServerStatus:
        if not self.running:
            return ServerStatus(running=False, loaded_models=self.library.loaded())
        return ServerStatus(True, self.host, self.port, round(time.time() - self._started_at, 1),
                            f"http://{self._url_host()}:{self.port}", self.library.loaded())
