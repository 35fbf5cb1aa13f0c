"""The service under uvicorn, with the limits uvicorn lacks (``tierroute serve`` runs :func:`serve`).

uvicorn times out idle keep-alive connections only: a client that opens a connection and never
finishes its request (slowloris) holds a file descriptor for ever, and at the process's limit the
service stops answering. :func:`limited_protocol` wraps uvicorn's h11 protocol so that

* a request must arrive whole (head and body) within ``request_timeout_s`` of its first byte (or
  of the connection opening); otherwise the connection is closed, with a 408 when part of a
  request had arrived;
* beyond ``max_connections`` open connections, a new one is answered 503 (the JSON error shape,
  ``retry-after: 1``) and closed; far beyond it (an eighth more), at once without reading;
* a malformed request gets the JSON error shape (400) instead of uvicorn's plain text.

Each such refusal is counted (:meth:`ServiceMetrics.refused`). Idle keep-alive connections close
after ``keep_alive_s``; a request head still incomplete past ``max_header_bytes`` gets 400
(h11's limit: what it buffers waiting for the rest of a head).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tierroute.errors import ConfigError

__all__ = ["limited_protocol", "uvicorn_config", "serve", "fit_file_limit", "FD_RESERVE"]

#: descriptors kept for everything that is not a client connection (the bundle, logs, threads, upstreams)
FD_RESERVE = 128


def _overflow(max_connections: int) -> int:
    return max(16, max_connections // 8)


def _raw_error(status: int, reason: str, message: str, extra_headers: bytes = b"") -> bytes:
    """A complete HTTP/1.1 error response with the JSON error shape, for the protocol to write itself."""
    from tierroute.serving.http_common import error_body

    body = json.dumps(error_body(status, message), separators=(",", ":")).encode("ascii")
    return (
        (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n").encode(
            "ascii"
        )
        + extra_headers
        + b"\r\n"
        + body
    )


@dataclass(frozen=True)
class _Limits:
    """What one server's protocol enforces (from its ServiceConfig) and how it counts refusals."""

    timeout: float
    cap: int
    hard_cap: int
    max_header_bytes: int
    on_refused: Callable[[int, str], None]
    waiting: tuple[Any, ...]  # h11's states of a connection whose request has not arrived whole

    @property
    def busy(self) -> str:
        return f"The service has {self.cap:,} connections open, its limit (--max-connections); retry in a moment, or raise the limit."

    async def over_capacity(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI app answering a connection over the cap: 503 in the JSON error shape."""
        busy_body = json.dumps({"error": {"status": 503, "message": self.busy, "type": "server_error"}}).encode("ascii")
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(busy_body)).encode()),
                    (b"connection", b"close"),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": busy_body})


if TYPE_CHECKING:  # uvicorn is the serve extra's: the mixin below is put before it when a protocol is made
    import asyncio

    from uvicorn.protocols.http.h11_impl import H11Protocol

    _ProtocolBase = H11Protocol
else:
    _ProtocolBase = object


class _LimitedMixin(_ProtocolBase):
    """The request timeout and the connection cap, over uvicorn's h11 protocol (the class
    :func:`limited_protocol` makes puts this first and sets ``limits``)."""

    limits: _Limits
    _deadline: asyncio.TimerHandle | None = None
    _received = False
    _over = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        limits, open_now = self.limits, len(self.connections)
        if open_now > limits.hard_cap:  # far over: answer without reading, free the descriptor now
            limits.on_refused(503, "over_capacity")
            transport.write(_raw_error(503, "Service Unavailable", limits.busy, b"retry-after: 1\r\n"))
            transport.close()
            return
        if open_now > limits.cap:  # over: its request (if it comes soon) gets a 503
            limits.on_refused(503, "over_capacity")
            self._over = True
            self.app = limits.over_capacity
        self._arm(min(limits.timeout, 1.0) if self._over else limits.timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received = True
        super().data_received(data)
        if self.transport.is_closing() or self.conn.their_state not in self.limits.waiting:
            self._disarm()  # the request is whole (or the connection done): the app has it
        elif self._deadline is None:  # the first bytes of a request after a keep-alive pause
            self._arm(self.limits.timeout)

    def send_400_response(self, msg: str) -> None:
        self.limits.on_refused(400, "malformed_http")
        message = (
            f"The request is not valid HTTP/1.1 ({msg.rstrip('.')}: a malformed line, or a head over "
            f"{self.limits.max_header_bytes:,} bytes, --max-header-bytes). Fix the client or send smaller headers."
        )
        self.transport.write(_raw_error(400, "Bad Request", message))
        self.transport.close()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state not in self.limits.waiting:
            return
        if self.cycle is not None and self.cycle.response_started:  # answered before its body came (a 413)
            if self.cycle.response_complete:  # unusable until the rest comes: close, nothing to count
                self.transport.close()
            return
        if not self._over:  # over-capacity connections were counted when they arrived
            self.limits.on_refused(408, "request_timeout")
        if self._received:
            message = (
                f"The request did not arrive whole within {self.limits.timeout:g} s (--request-timeout); send "
                "the headers and body without pausing."
            )
            self.transport.write(_raw_error(408, "Request Timeout", message))
        self.transport.close()


def limited_protocol(config: Any, on_refused: Callable[[int, str], None]) -> type:
    """uvicorn's h11 protocol with the request timeout and the connection cap of ``config`` (a
    :class:`~tierroute.serving.http.ServiceConfig`); ``on_refused(status, reason)`` counts each
    refusal. A new class per call: nothing is shared between servers."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    timeout, cap = float(config.request_timeout_s), int(config.max_connections)
    limits = _Limits(timeout, cap, cap + _overflow(cap), config.max_header_bytes, on_refused, (h11.IDLE, h11.SEND_BODY))

    class LimitedH11Protocol(_LimitedMixin, H11Protocol):
        pass

    LimitedH11Protocol.limits = limits
    return LimitedH11Protocol


def uvicorn_config(app: Any, host: str, port: int) -> Any:
    """The uvicorn.Config serving ``app`` (from :func:`~tierroute.serving.http.create_app`) with
    its ServiceConfig's limits."""
    import uvicorn

    config, metrics = app.state.config, app.state.metrics
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=limited_protocol(config, metrics.refused),
        ws="none",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=config.keep_alive_s,
        backlog=config.backlog,
        h11_max_incomplete_event_size=config.max_header_bytes,
        timeout_graceful_shutdown=5,
    )


def serve(app: Any, host: str, port: int) -> None:
    """Run ``app`` until interrupted."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, host, port)).run()


def fit_file_limit(max_connections: int | None, default: int) -> tuple[int, str | None]:
    """(the connection cap to use, a warning or None). Raises the process's soft limit on open
    files as far as the hard one allows to fit the cap; an explicit cap that cannot fit is a
    ConfigError, the default one is lowered to fit (with a warning)."""
    wanted = default if max_connections is None else max_connections
    try:
        import resource
    except ImportError:  # no such limit to manage (Windows)
        return wanted, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + _overflow(wanted) + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted, None
    fits = max(1, (soft - FD_RESERVE) * 8 // 9)
    if max_connections is not None:
        raise ConfigError(
            f"--max-connections {max_connections:,} needs about {need:,} open files; this process may "
            f"open {soft:,} (ulimit -n, hard limit {hard}). Raise the limit, or pass --max-connections "
            f"{fits:,} or less."
        )
    return fits, (
        f"warning: the open-file limit ({soft:,}, ulimit -n) fits {fits:,} connections, fewer than the "
        f"default {default:,}; serving with --max-connections {fits:,}. Raise ulimit -n for more."
    )
