"""Dynamic batching: images of concurrent requests are scored together, in one worker thread.

A forward pass on 8 images costs far less than 8 passes on one, which is how ``defectkit
predict`` is fast offline. Here each request puts its images on an asyncio queue and
awaits their results; one loop takes the first waiting image, gathers up to
``max_batch`` (waiting at most ``max_wait_s`` for more to arrive) and scores them in a
single worker thread, so the event loop keeps accepting and decoding uploads meanwhile.
Under load the queue is never empty and batches fill without waiting at all. The queue
is bounded: a request whose images do not fit is refused at once (:class:`QueueFull`),
which the service answers 503 with ``Retry-After``, instead of letting latency grow
without end. ``stop`` scores whatever is still queued before returning.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence


class QueueFull(Exception):
    """The request's images do not fit in the queue."""


@dataclass
class _Item:
    payload: Any
    future: "asyncio.Future[Any]"


class DynamicBatcher:
    """``await batcher.submit(items)`` -> one result per item, computed by ``run_batch(payloads)``.

    ``run_batch`` takes a list of payloads and returns a list of results of the same length
    (an ``Exception`` in the list fails that item only; raising fails the whole batch).
    ``on_batch(size, seconds)`` is told about every batch (metrics)."""

    def __init__(
        self,
        run_batch: Callable[[List[Any]], Sequence[Any]],
        max_batch: int,
        max_wait_s: float,
        queue_size: int,
        on_batch: Optional[Callable[[int, float], None]] = None,
    ):
        self.run_batch = run_batch
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.queue_size = int(queue_size)
        self.on_batch = on_batch
        self._queue: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._closing = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def depth(self) -> int:
        """Images waiting to be scored."""
        return 0 if self._queue is None else self._queue.qsize()

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="defectkit-score")
        self._closing = False
        self._task = asyncio.create_task(self._loop(), name="defectkit-batcher")

    async def stop(self) -> None:
        """Score what is queued, then end the loop and the worker thread."""
        self._closing = True
        if self._queue is not None and self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = None

    async def submit(self, payloads: Sequence[Any]) -> List[Any]:
        """Queue ``payloads`` together (all or none) and wait for their results, in order."""
        if self._queue is None or not self.running or self._closing:
            raise RuntimeError("the scoring queue is not running (the service is starting or shutting down)")
        if self._queue.qsize() + len(payloads) > self.queue_size:
            raise QueueFull(f"{self._queue.qsize()} images are waiting to be scored (queue size {self.queue_size})")
        loop = asyncio.get_running_loop()
        items = [_Item(p, loop.create_future()) for p in payloads]
        for item in items:
            self._queue.put_nowait(item)  # fits: checked above, and nothing awaits in between
        results = []
        for item in items:
            results.append(await item.future)
        return results

    async def _gather(self) -> List[_Item]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [i.payload for i in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request, never kills the loop
                results = [exc] * len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - start)
            for item, result in zip(batch, results):
                if not item.future.done():  # the client may have gone away
                    if isinstance(result, BaseException):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)
                self._queue.task_done()
