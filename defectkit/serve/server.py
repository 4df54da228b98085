"""Loading the model and running the service under uvicorn.

uvicorn handles SIGTERM and SIGINT: it stops accepting connections, lets the requests in
flight finish (up to ``GRACEFUL_SHUTDOWN_S``), then runs the application's shutdown, which
scores whatever is still queued. Access lines are defectkit's own JSON lines
(``defectkit.serve.access``), so uvicorn's access log is off.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

from .settings import ServeSettings

#: Seconds uvicorn waits for requests in flight after SIGTERM before closing them.
GRACEFUL_SHUTDOWN_S = 30


def configure_access_log(stream=None) -> None:
    """Access lines (already JSON) to ``stream`` (stderr), one per line, nothing added."""
    logger = logging.getLogger("defectkit.serve.access")
    if not any(getattr(h, "_defectkit", False) for h in logger.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._defectkit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


#: glibc malloc arenas the service may use. Each thread that decodes uploads would otherwise
#: get an arena of its own (up to 8 per core), and their fragmentation reads as memory growth.
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """``mallopt(M_ARENA_MAX, arenas)`` on glibc (like ``MALLOC_ARENA_MAX``); False elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, int(arenas)))  # M_ARENA_MAX is -8 in malloc.h
    except (OSError, AttributeError):
        return False


def allow_pixels(max_pixels: int) -> None:
    """Let Pillow open images up to the service's own pixel limit (its default refuses above ~179 Mpx,
    which would otherwise override a larger ``--max-pixels``); the service checks the limit itself."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def run(
    model: Path,
    settings: ServeSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    ready_line: Optional[str] = None,
) -> None:
    """Load ``model`` (any format ``load_scorer`` opens) and serve it until SIGTERM / Ctrl-C."""
    import uvicorn

    from ..deploy.loading import load_scorer
    from .app import create_app

    limit_malloc_arenas()
    scorer = load_scorer(model, device=device)
    allow_pixels(settings.max_pixels)
    configure_access_log()
    app = create_app(scorer, settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    auth = "API key required (except /health)" if settings.api_key else "no API key"
    print(
        f"serving {model} ({scorer.method}, model name {settings.model_name!r}) on http://{host}:{port} "
        f"[{auth}; batches of up to {settings.max_batch}, queue {settings.queue_size}]",
        file=sys.stderr,
        flush=True,
    )
    server.run()  # after a graceful shutdown on SIGTERM, uvicorn re-raises the signal (exit status 143)
