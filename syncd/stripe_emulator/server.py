"""Running the emulator: blocking (:func:`serve`) or on a background thread.

``serve(host, port, config)`` is what ``syncd stripe-emulator`` runs.
:class:`BackgroundServer` runs uvicorn on a thread (a free loopback port by default)
for tests and for ``syncd run`` in offline mode::

    with BackgroundServer(EmulatorConfig(seed=1)) as server:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url})
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from .app import create_app
from .config import EmulatorConfig
from .emulator import Emulator

__all__ = ["DEFAULT_PORT", "BackgroundServer", "serve"]

DEFAULT_PORT = 12111


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    config: EmulatorConfig | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve the emulator until interrupted (binds to loopback by default)."""
    app = create_app(config)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        app.state.emulator.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """uvicorn serving the emulator on a daemon thread."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_level: str = "warning",
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.app = create_app(config)
        self.emulator: Emulator = self.app.state.emulator
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host=host, port=self.port, log_level=log_level, lifespan="on")
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread = threading.Thread(target=self._server.run, name="stripe-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Stripe emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.emulator.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
