"""The health port: ``/health``, ``/health/circuit-breakers`` and ``/metrics``.

It runs on its own threads (``ThreadingHTTPServer``), not on the app's event loop, so it
keeps answering while the loop is busy or blocked or a dependency hangs. It only reads:
breaker statuses from the registry and a heartbeat stamped by the loop, whose age
tells an operator whether the loop is still turning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from resilience.breaker import Clock, State
from resilience.registry import BreakerRegistry

if TYPE_CHECKING:
    from resilience.settings import ResilienceSettings

__all__ = ["HealthServer", "Heartbeat", "health_report"]

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 0.5
DEFAULT_STALE_AFTER = 5.0


class Heartbeat:
    """Stamps the time from inside the event loop, so other threads can see it turning."""

    def __init__(
        self, interval: float = DEFAULT_HEARTBEAT_INTERVAL, clock: Clock = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin beating on the running loop; call from inside it."""
        self.beat()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    def stop(self) -> None:
        """Stop beating (its age then grows, as for a blocked loop)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def beat(self) -> None:
        """Record that the loop is alive now."""
        self._last = self._clock()

    def age(self) -> float | None:
        """Seconds since the last beat, or None if it never started."""
        last = self._last
        return None if last is None else max(0.0, self._clock() - last)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.beat()


def health_report(
    registry: BreakerRegistry,
    *,
    service: str,
    version: str,
    heartbeat: Heartbeat | None = None,
    stale_after: float = DEFAULT_STALE_AFTER,
    services: Callable[[], dict[str, bool]] | None = None,
) -> tuple[int, dict[str, Any]]:
    """The ``/health`` body and HTTP status.

    healthy: every circuit closed; degraded: any circuit open or half-open, or the event
    loop's heartbeat is stale; unhealthy (503): every guarded dependency is unavailable.
    """
    statuses = registry.statuses()
    states = [status.state for status in statuses.values() if status.enabled]
    available = {name: status.state is not State.OPEN for name, status in statuses.items()}
    if services is not None:
        available |= services()
    age = heartbeat.age() if heartbeat is not None else None
    loop_ok = age is None or age <= stale_after
    if states and all(state is State.OPEN for state in states):
        status = "unhealthy"
    elif not loop_ok or any(state is not State.CLOSED for state in states):
        status = "degraded"
    else:
        status = "healthy"
    body = {
        "status": status,
        "service": service,
        "version": version,
        "timestamp": datetime.now(UTC).isoformat(),
        "services": available,
        "event_loop": {
            "heartbeat_age_s": None if age is None else round(age, 3),
            "responsive": loop_ok,
        },
        "circuit_breakers": {name: s.as_dict() for name, s in statuses.items()},
    }
    code = HTTPStatus.SERVICE_UNAVAILABLE if status == "unhealthy" else HTTPStatus.OK
    return code, body


class HealthServer:
    """Serves health and metrics on a background thread; use as a context manager."""

    def __init__(
        self,
        registry: BreakerRegistry,
        metrics_registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 8001,
        service: str = "chainlit-ui",
        version: str = "0",
        heartbeat: Heartbeat | None = None,
        stale_after: float = DEFAULT_STALE_AFTER,
        services: Callable[[], dict[str, bool]] | None = None,
    ) -> None:
        self._registry = registry
        self._metrics = metrics_registry
        self._report_args: dict[str, Any] = {
            "service": service,
            "version": version,
            "heartbeat": heartbeat,
            "stale_after": stale_after,
            "services": services,
        }
        self._httpd = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls,
        registry: BreakerRegistry,
        metrics_registry: CollectorRegistry,
        settings: ResilienceSettings,
        heartbeat: Heartbeat,
    ) -> HealthServer:
        """The server as every Nova process runs it: host, port, name from ``settings``."""
        return cls(
            registry,
            metrics_registry,
            host=settings.health_host,
            port=settings.health_port,
            service=settings.service_name,
            version=nova_version(),
            heartbeat=heartbeat,
            stale_after=settings.heartbeat_stale_after,
        )

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host = self._httpd.server_address[0]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        """Serve on a daemon thread; returns at once."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="health-server", daemon=True
        )
        self._thread.start()
        logger.info("health server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _route(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of ``path``."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/health":
            code, body = health_report(self._registry, **self._report_args)
            return code, "application/json", _json(body)
        if path == "/health/circuit-breakers":
            statuses = self._registry.statuses()
            body = {name: status.as_dict() for name, status in statuses.items()}
            return HTTPStatus.OK, "application/json", _json(body)
        if path == "/metrics":
            self._registry.statuses()  # moves due circuits to half-open before the scrape
            return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self._metrics)
        error = {"error": "not found", "paths": ["/health", "/health/circuit-breakers", "/metrics"]}
        return HTTPStatus.NOT_FOUND, "application/json", _json(error)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "nova-health"
            # Keep-alive (every reply has a Content-Length), so a scraper or a load
            # balancer's checks reuse one connection; an idle one is closed after 30 s.
            protocol_version = "HTTP/1.1"
            timeout = 30
            # Headers and body go out as two writes; with Nagle's algorithm the body then
            # waits for the client's delayed ACK (about 40 ms) on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                try:
                    code, content_type, payload = server._route(self.path)
                except Exception:
                    logger.exception("health request %s failed", self.path)
                    code, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json"
                    payload = _json({"error": "internal error"})
                self._send(code, content_type, payload)

            def do_HEAD(self) -> None:
                code, content_type, payload = server._route(self.path)
                self._send(code, content_type, payload, body=False)

            def _send(
                self, code: int, content_type: str, payload: bytes, body: bool = True
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if body:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s %s", self.address_string(), format % args)

        return Handler


def nova_version() -> str:
    """Nova's installed version for ``/health``, or ``0+unknown`` from a bare checkout."""
    try:
        return version("nova")
    except PackageNotFoundError:
        return "0+unknown"


class _Server(ThreadingHTTPServer):
    """One thread per connection; a listen backlog that absorbs bursts of checks."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops connections from a burst of checks,
    # which then wait a second or more for the SYN to be retried.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up is routine (logged at debug); anything else is logged in full.

        socketserver's default prints a traceback to stderr for both.
        """
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("health client %s went away", client_address)
        else:
            logger.exception("health request from %s failed", client_address)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
