"""The ASGI layers every request passes before a route: access log and metrics, API key, body limit.

Plain ASGI (no BaseHTTPMiddleware), so a refusal costs no more than writing its answer
and the body limit holds however the client sends the body (with a Content-Length or
chunked): the body is read here, counted, and handed on only when within the limit.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import json
import logging
import time
from typing import Awaitable, Callable, Dict, List, Optional, Tuple

from starlette.routing import Match

from .metrics import ServiceMetrics

Scope = Dict
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

#: One JSON line per request goes to this logger (``server.py`` sends it to stderr).
ACCESS_LOG = logging.getLogger("defectkit.serve.access")
#: Paths open without the API key (liveness probes must work without secrets).
OPEN_PATHS = ("/health",)
#: How much more than the limit is read and thrown away before a 413, so the client can read
#: the answer instead of seeing its upload cut off; a longer body is cut off.
DRAIN_FACTOR = 4


async def send_json(send: Callable, status: int, body: Dict, headers: Optional[Dict[str, str]] = None) -> None:
    data = json.dumps(body).encode()
    raw: List[Tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class AccessLog:
    """Times each request, counts it in the metrics by endpoint and status, and logs one JSON line."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes_of: Callable[[], list]):
        self.app, self.metrics, self.routes_of = app, metrics, routes_of

    def endpoint(self, scope: Scope) -> str:
        """The route's path template (``/v2/models/{name}/infer``), so metrics do not grow with model names."""
        route = scope.get("route")  # set by the router once it has matched
        if getattr(route, "path", None):
            return route.path
        for route in self.routes_of():  # refused before routing (401, 413): match it here
            path = getattr(route, "path", None)
            if path and route.matches(scope)[0] == Match.FULL:
                return path
        return "other"

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}
        scope.setdefault("state", {})

        async def send_and_note(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - start
            endpoint = self.endpoint(scope)
            self.metrics.observe_request(endpoint, status["code"], seconds)
            entry = {
                "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
                "client": (scope.get("client") or ("", 0))[0],
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status["code"],
                "duration_ms": round(seconds * 1e3, 2),
            }
            entry.update(scope["state"].get("log", {}))
            ACCESS_LOG.info(json.dumps(entry))


class ApiKey:
    """With a key set, every path but ``/health`` needs ``Authorization: Bearer <key>`` (401 otherwise)."""

    def __init__(self, app: ASGIApp, key: Optional[str]):
        self.app = app
        self.key = key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or self.key is None or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
            what = "missing" if not given else "wrong"
            await send_json(
                send,
                401,
                {"error": f"{what} API key: send the header 'Authorization: Bearer <key>'"},
                {"WWW-Authenticate": "Bearer"},
            )
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Reads the request body (at most ``max_bytes``) before the app sees it; a longer one is 413."""

    def __init__(self, app: ASGIApp, max_bytes: Callable[[Scope], int]):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes(scope)
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(
                        send, 400, {"error": f"bad Content-Length header {value.decode(errors='replace')!r}"}
                    )
                    return
        chunks, size, over = [], 0, declared is not None and declared > limit
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                over = True
            if not over:
                chunks.append(body)
            elif size > DRAIN_FACTOR * limit:
                break  # stop reading; the server closes the connection after answering
            if not message.get("more_body", False):
                break
        if over:
            total = declared if declared is not None else f"more than {limit}"
            await send_json(
                send,
                413,
                {"error": f"request body of {total} bytes is over the limit of {limit} bytes (--max-bytes)"},
                {"Connection": "close"},
            )
            return
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
