"""The service on a loopback port in a thread (tests, benchmarks, embedding beside a main loop)."""

from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from tierroute.serving.http import ServiceConfig, create_app  # noqa: E402
from tierroute.serving.loopback import LoopbackServer  # noqa: E402


def test_the_service_answers_on_its_port_until_stopped() -> None:
    with LoopbackServer(create_app(ServiceConfig())) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert not server.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_an_app_that_cannot_start_is_reported() -> None:
    async def broken(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no"})

    with pytest.raises(
        RuntimeError,
        match=r"the service did not start on http://127\.0\.0\.1:\d+ within 5 s "
        r"\(uvicorn exited with status 3; ",
    ):
        LoopbackServer(broken, start_timeout_s=5)
