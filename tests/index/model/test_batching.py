from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numpy.typing import NDArray

from index.config import Settings
from index.model.batching import BatchingEmbedder, MicroBatcher
from index.model.embedder import Embedder, EmbedResult
from index.model.imaging import decode_for_model
from tests.conftest import IMAGES_DIR

NAMES = ["cat.png", "coffee.jpg", "rocket.jpg", "coins.jpg", "camera.jpg", "astronaut.jpg"]


@pytest.fixture(scope="module")
def crops(embedder: Embedder) -> NDArray[np.uint8]:
    pre = embedder.preprocessing
    return np.stack([decode_for_model((IMAGES_DIR / n).read_bytes(), pre, 10**8).crop for n in NAMES])


def test_concurrent_callers_share_one_forward_pass_and_get_their_own_rows(
    embedder: Embedder, crops: NDArray[np.uint8]
) -> None:
    batcher = MicroBatcher(embedder.forward, max_batch=32, max_wait_s=0.5)
    start = threading.Barrier(len(NAMES))

    def one(i: int) -> EmbedResult:
        start.wait()
        return batcher.run(crops[i : i + 1])

    with ThreadPoolExecutor(len(NAMES)) as pool:
        results = list(pool.map(one, range(len(NAMES))))
    batcher.close()
    assert batcher.stats.passes < len(NAMES)
    assert batcher.stats.images == len(NAMES)
    reference = embedder.forward(crops)
    for i, result in enumerate(results):
        assert result.embeddings.shape == (1, reference.embeddings.shape[1])
        assert float(result.embeddings[0] @ reference.embeddings[i]) > 0.99
        assert result.predictions[0][0].class_index == reference.predictions[i][0].class_index


def test_a_request_larger_than_the_batch_is_split_and_reassembled_in_order(
    embedder: Embedder, crops: NDArray[np.uint8]
) -> None:
    batcher = MicroBatcher(embedder.forward, max_batch=4, max_wait_s=0.0)
    result = batcher.run(crops)
    batcher.close()
    assert batcher.stats.passes == 2
    assert batcher.stats.largest_batch == 4
    reference = embedder.forward(crops)
    assert [p[0].class_index for p in result.predictions] == [p[0].class_index for p in reference.predictions]
    np.testing.assert_allclose(np.sum(result.embeddings * reference.embeddings, axis=1), 1.0, atol=0.01)


def test_a_failing_forward_pass_raises_in_every_caller_and_the_batcher_keeps_working(
    crops: NDArray[np.uint8],
) -> None:
    calls: list[int] = []

    def forward(batch: NDArray[np.uint8]) -> EmbedResult:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return EmbedResult(np.zeros((len(batch), 2), np.float32), [[] for _ in batch])

    batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0.2)
    start = threading.Barrier(2)

    def one(i: int) -> EmbedResult:
        start.wait()
        return batcher.run(crops[i : i + 1])

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(one, i) for i in range(2)]
        for f in futures:
            with pytest.raises(RuntimeError, match="out of memory"):
                f.result()
    assert batcher.run(crops[:3]).embeddings.shape == (3, 2)
    batcher.close()


def test_a_closed_batcher_refuses_new_work(embedder: Embedder, crops: NDArray[np.uint8]) -> None:
    batcher = MicroBatcher(embedder.forward, max_batch=4, max_wait_s=0.0)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.run(crops[:1])


def test_the_batching_embedder_gives_the_plain_embedders_results(embedder: Embedder, crops: NDArray[np.uint8]) -> None:
    batching = BatchingEmbedder(Settings(batch_size=4, microbatch_wait_ms=1))
    try:
        result = batching.forward(crops)
    finally:
        batching.close()
    reference = embedder.forward(crops)
    assert batching.version == embedder.version
    assert [p[0].label for p in result.predictions] == [p[0].label for p in reference.predictions]
    np.testing.assert_allclose(np.sum(result.embeddings * reference.embeddings, axis=1), 1.0, atol=0.01)
