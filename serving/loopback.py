"""The service's ASGI app on a loopback port, in a background thread: for tests, benchmarks and
processes that embed the service beside their own main loop.

    with LoopbackServer(create_app(ServiceConfig(), proxy=ProxyConfig("catalogue.toml"))) as server:
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="-")...

uvicorn (the ``serve`` extra) is imported when a server starts. The port is bound before uvicorn
starts, so it is known at once and no other process can take it in between.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """Serve ``app`` on 127.0.0.1 at a free port until :meth:`stop` (or the end of a ``with`` block)."""

    def __init__(self, app: Any, start_timeout_s: float = 30.0, **uvicorn_options: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"log_level": "warning", "access_log": False, "lifespan": "on", **uvicorn_options}
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self.exit_code: int | None = None  # uvicorn's, when it exited on its own (a failed startup: 3)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                why = f"uvicorn exited with status {self.exit_code}" if self.exit_code is not None else "uvicorn hung"
                raise RuntimeError(f"the service did not start on {self.url} within {start_timeout_s:g} s ({why}; its log is above)")
            time.sleep(0.02)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except SystemExit as exc:  # uvicorn exits the process on a failed startup; here only its thread ends
            self.exit_code = exc.code if isinstance(exc.code, int) else 1

    def stop(self) -> None:
        """Ask uvicorn to finish (open requests complete), wait for it, and free the port."""
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
