"""One exception for every refusal, so each becomes the same JSON body ``{"error": ...}``."""

from __future__ import annotations

from typing import Dict, Optional


class ServeError(Exception):
    """A request the service refuses: HTTP ``status``, a message that names the part and the
    problem, and extra response ``headers`` (``Retry-After`` for 503)."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.headers = dict(headers or {})
