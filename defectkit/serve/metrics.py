"""What ``GET /metrics`` reports, in the Prometheus text format (prometheus_client).

Each service has its own registry (nothing global), so two services in one process, as in
the tests, do not share counts.
"""

from __future__ import annotations

from typing import Callable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Request latency buckets (seconds): a few ms for a small model to seconds for a big frame.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """Requests by endpoint and status, latency, images by label (the defect rate), batch sizes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch: int, queue_depth: Optional[Callable[[], int]] = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "defectkit_requests", "HTTP requests answered, by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "defectkit_request_duration_seconds",
            "Time from request to response, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter(
            "defectkit_images", "Images scored, by label (none: the model has no threshold)", ["label"], registry=r
        )
        self.defect_rate = Gauge(
            "defectkit_defect_rate",
            "Fraction of the labelled images scored so far that were labelled defect",
            registry=r,
        )
        self.batch_size = Histogram(
            "defectkit_batch_size",
            "Images per forward pass (dynamic batching)",
            buckets=tuple(float(b) for b in range(1, max_batch + 1)),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "defectkit_batch_duration_seconds", "Time to score one batch", buckets=LATENCY_BUCKETS, registry=r
        )
        depth = Gauge("defectkit_queue_depth", "Images waiting to be scored", registry=r)
        if queue_depth is not None:
            depth.set_function(queue_depth)
        self._good = 0
        self._defect = 0

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_label(self, label: Optional[str]) -> None:
        self.images.labels(label=label or "none").inc()
        if label == "defect":
            self._defect += 1
        elif label == "good":
            self._good += 1
        labelled = self._good + self._defect
        if labelled:
            self.defect_rate.set(self._defect / labelled)

    def render(self) -> bytes:
        return generate_latest(self.registry)
