"""Prometheus metrics at `GET /metrics`: request latency by route (prometheus-fastapi-instrumentator) and the
service's own gauges and counters (prometheus-client). Each app has its own registry, so several apps in one
process (the tests) never collide."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_fastapi_instrumentator import Instrumentator

from index.model.batching import BatchingEmbedder
from index.service import ImageIndex


class ServiceMetrics:
    """The service's metrics, read from the index when scraped (gauges) or counted as things happen."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.registry = CollectorRegistry()
        self.images = Gauge("imgsim_images_stored", "Images in the index", registry=self.registry)
        self.images.set_function(lambda: float(len(idx.vectors)) if (idx := self._index()) else 0.0)
        self.queue = Gauge("imgsim_inference_queue_images", "Images waiting for a forward pass", registry=self.registry)
        self.queue.set_function(self._queued)
        self.batch_size = Histogram(
            "imgsim_inference_batch_size",
            "Images per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.ingest_errors = Counter(
            "imgsim_ingest_errors_total", "Ingest requests refused, by HTTP status", ["status"], registry=self.registry
        )
        self.rejected = Counter(
            "imgsim_overload_rejections_total",
            "Requests answered 503 because the model was busy",
            registry=self.registry,
        )
        self.ready = Gauge("imgsim_ready", "1 once the model is loaded and the index open", registry=self.registry)
        self.ready.set_function(lambda: 1.0 if self._index() is not None else 0.0)

    def _index(self) -> ImageIndex | None:
        index: ImageIndex | None = getattr(self.app.state, "index", None)
        return index

    def _queued(self) -> float:
        index = self._index()
        if index is not None and isinstance(index.embedder, BatchingEmbedder):
            return float(index.embedder.batcher.queued)
        return 0.0

    def watch(self, index: ImageIndex) -> None:
        """Count the batch sizes of the index's forward passes."""
        if isinstance(index.embedder, BatchingEmbedder):
            index.embedder.batcher.on_batch = self.batch_size.observe


def install_metrics(app: FastAPI) -> ServiceMetrics:
    metrics = ServiceMetrics(app)
    instrumentator = Instrumentator(excluded_handlers=["/metrics"], registry=metrics.registry)
    instrumentator.instrument(app).expose(app, endpoint="/metrics", include_in_schema=False)
    app.state.metrics = metrics
    return metrics
