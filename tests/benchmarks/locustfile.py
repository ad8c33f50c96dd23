"""Locust users for `tests/benchmarks/load.py`: a mix of searches (by stored image and by upload) and ingests.

Run by load.py (headless, loopback, bounded in time and in request count); not a test.
"""

from __future__ import annotations

import io
import itertools
import os
import random

import numpy as np
from locust import HttpUser, between, events, task
from PIL import Image

MAX_REQUESTS = int(os.environ.get("LOAD_MAX_REQUESTS", "5000"))
STORED_IDS = int(os.environ.get("LOAD_STORED_IDS", "100"))
_seeds = itertools.count(int(os.environ.get("LOAD_SEED_BASE", "1000000")))
_sent = itertools.count(1)


def fresh_image() -> bytes:
    """A new 224 x 224 photo-like PNG each call (so every ingest embeds and stores)."""
    rng = np.random.default_rng(next(_seeds))
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((224, 224), Image.Resampling.BILINEAR).save(buf, "PNG")
    return buf.getvalue()


QUERY = fresh_image()


@events.request.add_listener
def _bound_count(**_kwargs: object) -> None:
    if next(_sent) >= MAX_REQUESTS:
        from locust.runners import Runner

        runner: Runner | None = getattr(_bound_count, "runner", None)
        if runner is not None:
            runner.quit()


@events.init.add_listener
def _keep_runner(environment: object, **_kwargs: object) -> None:
    _bound_count.runner = environment.runner  # type: ignore[attr-defined]


class ImgsimUser(HttpUser):
    wait_time = between(0.0, 0.05)

    @task(6)
    def search_by_ref(self) -> None:
        ref = random.randint(1, STORED_IDS)
        self.client.get("/search", params={"ref": str(ref), "k": 10}, name="GET /search")

    @task(2)
    def search_by_upload(self) -> None:
        self.client.post("/search", files={"file": ("q.png", QUERY)}, params={"k": 10}, name="POST /search")

    @task(2)
    def ingest(self) -> None:
        self.client.post("/ingest", files={"files": ("new.png", fresh_image())}, name="POST /ingest")
