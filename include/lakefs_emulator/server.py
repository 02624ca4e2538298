"""Run the lakeFS-API emulator: embedded in a background thread, or blocking for the CLI."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from lakefs_emulator.app import create_app
from lakefs_emulator.store import Store

__all__ = ["EmulatorServer", "serve"]

# The well-known lakeFS quickstart example keys: fine for a local emulator, never a secret.
_DEFAULT_KEY = "AKIAIOSFOLQUICKSTART"
_DEFAULT_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _config(app, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        # Many SDK threads keep connections open between calls; don't drop them too soon.
        timeout_keep_alive=30,
    )


def _listen(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn: port 0 becomes a known port, and a busy port raises
    OSError (uvicorn would log and exit the process)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class EmulatorServer:
    """The emulator on `host:port` (port 0: a free one) in a background thread.

    Use as a context manager, or call `start()` / `stop()`. State lives in `data_dir`, so a
    new server on the same directory carries on where the last one stopped.
    """

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key_id: str = _DEFAULT_KEY,
        secret_access_key: str = _DEFAULT_SECRET,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmulatorServer:
        if self._server is not None:
            return self
        sock = _listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        try:
            self._store = Store(self.data_dir)
        except Exception:
            sock.close()
            raise
        app = create_app(self._store, self.access_key_id, self.secret_access_key)
        server = uvicorn.Server(_config(app, "warning"))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="lakefs-emulator", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(5)
                sock.close()
                self._store.close()
                raise RuntimeError(f"lakeFS emulator did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self._server, self._thread, self._sock = server, thread, sock
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()
        self._store.close()
        self._server = self._thread = self._store = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8001,
    access_key_id: str = _DEFAULT_KEY,
    secret_access_key: str = _DEFAULT_SECRET,
) -> None:
    """Serve until interrupted (Ctrl-C). Used by `pawpaw lakefs-emulator`.

    Raises OSError when the port is taken or the state directory is not writable.
    """
    sock = _listen(host, port)
    try:
        store = Store(Path(data_dir))
    except Exception:
        sock.close()
        raise
    try:
        app = create_app(store, access_key_id, secret_access_key)
        uvicorn.Server(_config(app, "info")).run(sockets=[sock])
    finally:
        sock.close()
        store.close()
