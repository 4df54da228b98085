"""A load generator for a running service: N ``POST /predict`` requests from C concurrent clients.

Used by the load test (tests/test_serve_load.py) and the benchmark (benchmarks/serve_load.py),
so both measure the same way. Each client is a thread with its own keep-alive connection
(httpx); files are read once and cycled through in order. Latency is per request, from
sending to the parsed answer; throughput is requests answered per second of wall time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    seconds: float
    latencies_s: List[float] = field(repr=False, default_factory=list)
    errors: List[str] = field(default_factory=list)
    statuses: Dict[int, int] = field(default_factory=dict)
    labels: Dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Answered requests per second."""
        return len(self.latencies_s) / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies_s) * 1e3, q)) if self.latencies_s else float("nan")

    def summary(self) -> Dict[str, object]:
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 2),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "labels": dict(self.labels),
        }


def run_load(
    url: str,
    files: Sequence[Path],
    requests: int,
    concurrency: int,
    headers: Optional[dict] = None,
    timeout_s: float = 60.0,
    after: Optional[Callable[[int], None]] = None,
) -> LoadResult:
    """Send ``requests`` uploads of ``files`` (cycled) to ``url`` (``.../predict``) from ``concurrency`` threads.

    ``after(n)`` is called (from a client thread, once) when ``n`` requests have been answered
    for each ``n`` in ``after.at`` (e.g. to read the server's memory after the first 200)."""
    import httpx

    payloads = [(Path(f).name, Path(f).read_bytes()) for f in files]
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    result = LoadResult(requests, concurrency, 0.0)
    marks = sorted(getattr(after, "at", ())) if after is not None else []

    def take() -> Optional[int]:
        with lock:
            if state["next"] >= requests:
                return None
            state["next"] += 1
            return state["next"] - 1

    def client() -> None:
        with httpx.Client(timeout=timeout_s, headers=headers) as http:
            while (i := take()) is not None:
                name, data = payloads[i % len(payloads)]
                start = time.perf_counter()
                try:
                    r = http.post(url, files={"file": (name, data, "image/png")})
                    body = r.json()
                    status, error = r.status_code, None if r.status_code == 200 else str(body.get("error"))
                except Exception as exc:  # noqa: BLE001 - a failed request is counted, not raised
                    status, error, body = -1, f"{type(exc).__name__}: {exc}", {}
                elapsed = time.perf_counter() - start
                hit = None
                with lock:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if error is None:
                        result.latencies_s.append(elapsed)
                        label = str(body.get("label"))
                        result.labels[label] = result.labels.get(label, 0) + 1
                    else:
                        result.errors.append(f"request {i} ({name}): {status} {error}")
                    state["done"] += 1
                    if marks and state["done"] == marks[0]:
                        hit = marks.pop(0)
                if hit is not None:
                    after(hit)

    threads = [threading.Thread(target=client, name=f"load-client-{k}") for k in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - start
    return result
