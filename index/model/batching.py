"""Dynamic micro-batching: forward passes asked for by many threads at once are merged into one.

A server answers many small requests at the same time (one or two images each). Running one forward pass
per request leaves the model at batch size 1, where it is several times slower per image than at batch 32.
`MicroBatcher` queues the crops of concurrent callers, waits at most `max_wait_s` for more to arrive (or
until `max_batch` crops are queued), runs one forward pass on all of them and hands each caller its rows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.errors import DeadlineExceeded, Overloaded
from index.model.embedder import Embedder, EmbedResult

if TYPE_CHECKING:
    import torch

ForwardFn = Callable[[NDArray[np.uint8]], EmbedResult]


@dataclass
class _Request:
    crops: NDArray[np.uint8]
    future: Future[EmbedResult] = field(default_factory=Future)


@dataclass
class BatchingStats:
    """Counts since start: forward passes run, images embedded, the largest batch."""

    passes: int = 0
    images: int = 0
    largest_batch: int = 0


class MicroBatcher:
    """Runs `forward` in one worker thread over batches gathered from concurrent `run` calls."""

    def __init__(
        self,
        forward: ForwardFn,
        max_batch: int,
        max_wait_s: float,
        max_queued: int | None = None,
        deadline_s: float | None = None,
    ) -> None:
        """`max_queued` bounds the crops waiting (beyond it `submit` raises `Overloaded`); `deadline_s` bounds
        how long `run` waits for its rows (then it raises `DeadlineExceeded`). None: unbounded."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._forward = forward
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_queued = max_queued
        self.deadline_s = deadline_s
        self.on_batch: Callable[[int], None] | None = None  # called with each forward pass's size (metrics)
        self.stats = BatchingStats()
        self._pending: deque[_Request] = deque()
        self._queued = 0  # crops waiting in `_pending`
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def queued(self) -> int:
        """Crops waiting for a forward pass."""
        return self._queued

    def run(self, crops: NDArray[np.uint8]) -> EmbedResult:
        """Embed `crops` (batch, size, size, 3), possibly together with other callers' crops; blocks.

        Raises:
            RuntimeError: the batcher is closed.
            Overloaded: the queue is full; DeadlineExceeded: the rows did not come within `deadline_s`.
            Whatever the forward pass raises.
        """
        if len(crops) == 0:
            return self._forward(crops)
        futures: list[Future[EmbedResult]] = []
        try:
            for start in range(0, len(crops), self.max_batch):
                futures.append(self.submit(crops[start : start + self.max_batch]))
            deadline = None if self.deadline_s is None else time.monotonic() + self.deadline_s
            parts = [f.result(None if deadline is None else max(0.0, deadline - time.monotonic())) for f in futures]
        except FutureTimeout:
            raise DeadlineExceeded(
                f"the model did not get to this request within {self.deadline_s:g} s (IMGSIM_REQUEST_TIMEOUT_S)"
            ) from None
        finally:
            for f in futures:
                f.cancel()  # only those still queued: their crops leave the queue unembedded
        if len(parts) == 1:
            return parts[0]
        return EmbedResult(
            np.concatenate([p.embeddings for p in parts]), [pred for p in parts for pred in p.predictions]
        )

    def submit(self, crops: NDArray[np.uint8]) -> Future[EmbedResult]:
        """Queue at most `max_batch` crops; the future resolves to their rows of a shared forward pass."""
        if not 0 < len(crops) <= self.max_batch:
            raise ValueError(f"submit between 1 and {self.max_batch} crops, not {len(crops)}")
        request = _Request(crops)
        with self._cond:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            # An empty queue takes any request, however large: the limit bounds waiting, not request size.
            if self.max_queued is not None and self._queued and self._queued + len(crops) > self.max_queued:
                raise Overloaded(
                    f"{self._queued} images are waiting for the model (IMGSIM_INFERENCE_QUEUE_LIMIT is "
                    f"{self.max_queued}); retry shortly"
                )
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="imgsim-microbatcher", daemon=True)
                self._thread.start()
            self._pending.append(request)
            self._queued += len(crops)
            self._cond.notify_all()
        return request.future

    def close(self) -> None:
        """Finish what is queued, then stop the worker thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _take_batch(self) -> list[_Request] | None:
        """Wait for work, then gather requests until the batch is full or the wait is over."""
        with self._cond:
            while not self._pending:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.max_wait_s
            while self._queued < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            taken: list[_Request] = []
            size = 0
            while self._pending and size + len(self._pending[0].crops) <= self.max_batch:
                request = self._pending.popleft()
                taken.append(request)
                size += len(request.crops)
            self._queued -= size
            return taken

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not live:
                continue
            crops = live[0].crops if len(live) == 1 else np.concatenate([r.crops for r in live])
            try:
                result = self._forward(crops)
            except BaseException as exc:  # handed to every waiting caller, never lost in this thread
                for r in live:
                    r.future.set_exception(exc)
                continue
            self.stats.passes += 1
            self.stats.images += len(crops)
            self.stats.largest_batch = max(self.stats.largest_batch, len(crops))
            if self.on_batch is not None:
                self.on_batch(len(crops))
            start = 0
            for r in live:
                end = start + len(r.crops)
                r.future.set_result(EmbedResult(result.embeddings[start:end], result.predictions[start:end]))
                start = end


class BatchingEmbedder(Embedder):
    """An `Embedder` whose forward passes, from any number of threads, go through one `MicroBatcher`.

    It drops in wherever an `Embedder` is used (e.g. `ImageIndex(settings, BatchingEmbedder(settings))`), so
    ingest, embedding and search by image all share the batches.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.batcher = MicroBatcher(
            super().forward,
            settings.batch_size,
            settings.microbatch_wait_ms / 1000.0,
            max_queued=settings.inference_queue_limit or None,
            deadline_s=settings.request_timeout_s or None,
        )

    def forward(self, crops: NDArray[np.uint8] | torch.Tensor) -> EmbedResult:
        """Like `Embedder.forward`, batched with concurrent callers' crops."""
        return self.batcher.run(np.asarray(crops, dtype=np.uint8))

    def close(self) -> None:
        self.batcher.close()
