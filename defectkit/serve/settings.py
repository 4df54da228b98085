"""What an operator can set when starting the service, with the defaults docs/serving.md states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Largest request body by default: 20 MiB (an uncompressed 12 Mpx RGB frame fits in a PNG of that size).
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: Largest image by default, from its header: 50 million pixels (decompression bombs claim far more).
DEFAULT_MAX_PIXELS = 50_000_000
#: Images scored together at most (one forward pass).
DEFAULT_MAX_BATCH = 8
#: How long the first image of a batch waits for others to join it.
DEFAULT_MAX_WAIT_MS = 5.0
#: Images waiting to be scored at most; beyond, requests are answered 503 with Retry-After.
DEFAULT_QUEUE_SIZE = 64
#: Files one ``POST /predict/batch`` (or tensors one v2 ``infer``) may carry.
MAX_FILES_PER_REQUEST = 16
#: Seconds a client is told to wait after a 503 (queue full).
RETRY_AFTER_S = 1


@dataclass
class ServeSettings:
    """Limits and batching of one service (``defectkit serve`` options)."""

    model_name: str = "model"
    api_key: Optional[str] = None
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    queue_size: int = DEFAULT_QUEUE_SIZE
    max_files: int = MAX_FILES_PER_REQUEST

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_batch", "queue_size", "max_files"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if self.max_files > self.queue_size:
            raise ValueError(
                f"queue_size ({self.queue_size}) must hold at least one full request of {self.max_files} images"
            )
