"""The ingest pipeline in stages: read and hash -> decode and crop -> embed in batches.

Decoding runs in a thread pool (Pillow releases the GIL while it decodes and resamples). When the forward
pass runs elsewhere (a GPU) or there are cores to spare, decoding runs a bounded window ahead of it, so the
two overlap without holding more than a few batches in memory. On a small CPU the forward pass already uses
every core, and threads decoding beside it only preempt its worker threads (torch's OpenMP, OpenVINO's and
ONNX Runtime's pools: each layer then waits for the slowest one), so there decoding and embedding take
turns, each with all the cores (`tests/benchmarks/engines.py --only overlap` measures both ways).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from index.errors import ImageDecodeError, ImageTooLarge, ImgsimError
from index.model.embedder import Embedder
from index.model.imaging import DecodeBudget, DecodedImage, decode_for_model, decode_jpegs_on_device, sha256_hex
from index.model.registry import Prediction

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ImageSource:
    """One image to ingest: uploaded bytes, or a file read when the pipeline gets to it."""

    name: str
    path: str = ""
    data: bytes | None = None

    @classmethod
    def from_path(cls, path: Path) -> ImageSource:
        return cls(name=path.name, path=str(path.resolve()))

    @classmethod
    def from_paths(cls, paths: Sequence[Path], resolved: Sequence[Path] | None = None) -> list[ImageSource]:
        """`from_path` for many files, e.g. a folder's; `resolved` when the caller has `resolved_paths(paths)`."""
        resolved = resolved_paths(paths) if resolved is None else resolved
        return [cls(name=p.name, path=str(r)) for p, r in zip(paths, resolved, strict=True)]


def resolved_paths(paths: Sequence[Path]) -> list[Path]:
    """`Path.resolve()` of each path, resolving each directory once: a file that is not itself a symlink
    resolves to its resolved directory plus its name (resolving every file of a thousand-file folder costs
    ~0.1 s of lstat calls, one per path component)."""
    dirs: dict[Path, Path] = {}
    out: list[Path] = []
    for p in paths:
        if p.name in ("", ".", "..") or p.is_symlink():
            out.append(p.resolve())
            continue
        parent = dirs.get(p.parent)
        if parent is None:
            parent = dirs[p.parent] = p.parent.resolve()
        out.append(parent / p.name)
    return out


@dataclass(frozen=True)
class ReadImage:
    """Bytes and content hash of a source, or why it could not be read.

    A `vouched` file was not read: it is unchanged since its stored content was read (see `index.storage.seen_files`),
    so its hash is the recorded one and its bytes are not needed.
    """

    source: ImageSource
    data: bytes
    sha256: str
    error: ImgsimError | None = None
    vouched: bool = False


@dataclass(frozen=True)
class EmbeddedImage:
    source: ImageSource
    decoded: DecodedImage
    data: bytes
    embedding: NDArray[np.float32]
    predictions: list[Prediction]


# Below this many cores, decoding on the CPU does not overlap a CPU forward pass.
MIN_CORES_TO_OVERLAP = 6
# Images decoded ahead while the model is still loading (about 150 KB each at 224 px): loading takes
# seconds, about as long as decoding a thousand photos on two cores.
WARMUP_DECODE_WINDOW = 1024


def default_workers() -> int:
    """Decode threads: every core, up to 8 (decoding takes turns with a CPU forward pass on small machines)."""
    return max(1, min(8, os.cpu_count() or 1))


def should_overlap(embedder: Embedder) -> bool:
    """Whether decoding should run while the forward pass does (see the module docstring)."""
    return embedder.device.type != "cpu" or (os.cpu_count() or 1) >= MIN_CORES_TO_OVERLAP


def read_sources(sources: Sequence[ImageSource], workers: int) -> list[ReadImage]:
    """Read (when needed) and hash every source; unreadable files become errors, not exceptions."""

    def read(src: ImageSource) -> ReadImage:
        if src.data is not None:
            return ReadImage(src, src.data, sha256_hex(src.data))
        try:
            data = Path(src.path).read_bytes()
        except OSError as exc:
            return ReadImage(src, b"", "", ImageDecodeError(f"cannot read {src.path}: {exc.strerror}"))
        return ReadImage(src, data, sha256_hex(data))

    if len(sources) < 8 or workers <= 1:
        return [read(s) for s in sources]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read, sources))


DecodeOutcome = DecodedImage | ImgsimError


def decode_stream(
    items: Iterable[ReadImage],
    embedder: Embedder,
    max_pixels: int,
    workers: int,
    window: int,
    overlap: bool | Callable[[], bool] = True,
    on_decoded: Callable[[], None] | None = None,
    budget: DecodeBudget | None = None,
) -> Iterator[tuple[ReadImage, DecodeOutcome]]:
    """Decode in a thread pool (each image within `budget`), yielding results in input order, at most `window`
    ahead of the consumer.

    Without `overlap`, nothing is decoded while the consumer works: `window` items are decoded together,
    then handed over. A callable is asked again each time the window is full. `on_decoded` is called on a
    decode thread after each image that decodes, in whatever order they finish.

    Raises:
        DecodeBusy: the decode budget stayed taken for longer than its `wait_s`.
    """
    overlapping = overlap if callable(overlap) else lambda: overlap
    pre = embedder.preprocessing

    def decode(item: ReadImage) -> DecodeOutcome:
        try:
            decoded = decode_for_model(item.data, pre, max_pixels, sha256=item.sha256, budget=budget)
        except (ImageDecodeError, ImageTooLarge) as exc:
            return exc
        if on_decoded is not None:
            on_decoded()
        return decoded

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque[tuple[ReadImage, Future[DecodeOutcome]]] = deque()
        for item in items:
            pending.append((item, pool.submit(decode, item)))
            if len(pending) >= window:
                if not overlapping():
                    done = [(head, fut.result()) for head, fut in pending]
                    pending.clear()
                    yield from done
                    continue
                head, fut = pending.popleft()
                yield head, fut.result()
        if not overlapping():
            done = [(head, fut.result()) for head, fut in pending]
            pending.clear()
            yield from done
        while pending:
            head, fut = pending.popleft()
            yield head, fut.result()


def embed_batches(
    decoded: Iterable[tuple[ReadImage, DecodedImage]], embedder: Embedder, batch_size: int
) -> Iterator[list[EmbeddedImage]]:
    """Group decoded images into batches and run one forward pass per batch."""
    batch: list[tuple[ReadImage, DecodedImage]] = []
    for pair in decoded:
        batch.append(pair)
        if len(batch) == batch_size:
            yield _embed(batch, embedder)
            batch = []
    if batch:
        yield _embed(batch, embedder)


def _embed(batch: list[tuple[ReadImage, DecodedImage]], embedder: Embedder) -> list[EmbeddedImage]:
    crops: NDArray[np.uint8] | torch.Tensor
    if all(isinstance(d.crop, np.ndarray) for _, d in batch):
        crops = np.stack([d.crop for _, d in batch])
    else:
        import torch

        # Crops decoded on the device stay there; the few decoded by Pillow join them.
        crops = torch.stack(
            [
                d.crop.to(embedder.device) if isinstance(d.crop, torch.Tensor) else torch.from_numpy(d.crop.copy())
                for _, d in batch
            ]
        ).to(embedder.device)
    result = embedder.forward(crops)
    return [
        EmbeddedImage(r.source, d, r.data, vector, preds)
        for (r, d), vector, preds in zip(batch, result.embeddings, result.predictions, strict=True)
    ]


def embed_read(
    items: Sequence[ReadImage],
    embedder: Embedder,
    max_pixels: int,
    batch_size: int,
    workers: int,
    on_error: Callable[[ReadImage, ImgsimError], None],
    device_decode: bool = False,
    budget: DecodeBudget | None = None,
) -> Iterator[list[EmbeddedImage]]:
    """Decode (within `budget`) and embed sources already read; failures go to `on_error` and the rest go on.

    With `device_decode` and a CUDA model, JPEGs are decoded, resized and cropped on the GPU (nvJPEG),
    a batch at a time, and their crops never pass through host memory.
    """
    ok: list[ReadImage] = []
    for item in items:
        if item.error is not None:
            on_error(item, item.error)
        else:
            ok.append(item)
    if not ok:
        return  # nothing to decode: the model (and torch) is never loaded
    if device_decode and embedder.device.type == "cuda":
        yield from embed_decoding_on_device(ok, embedder, max_pixels, batch_size, on_error, budget)
        return

    overlap: bool | Callable[[], bool]
    on_decoded: Callable[[], None] | None = None
    if not embedder.loaded:
        # Importing torch and loading the weights takes seconds of mostly single-threaded work: decode well
        # ahead meanwhile, on the cores it leaves idle; once loaded, overlap only where it pays. The load starts
        # with the first image that decodes, so when none does (a re-run whose only unread file is a truncated
        # JPEG) the model is never loaded.
        on_decoded = embedder.load_in_background
        window = max(2 * batch_size, WARMUP_DECODE_WINDOW)

        def overlap() -> bool:
            return not embedder.loaded or should_overlap(embedder)

    else:
        overlap = should_overlap(embedder)
        window = 2 * batch_size if overlap else batch_size

    def decoded() -> Iterator[tuple[ReadImage, DecodedImage]]:
        for item, outcome in decode_stream(ok, embedder, max_pixels, workers, window, overlap, on_decoded, budget):
            if isinstance(outcome, ImgsimError):
                on_error(item, outcome)
            else:
                yield item, outcome

    yield from embed_batches(decoded(), embedder, batch_size)


def embed_decoding_on_device(
    items: Sequence[ReadImage],
    embedder: Embedder,
    max_pixels: int,
    batch_size: int,
    on_error: Callable[[ReadImage, ImgsimError], None],
    budget: DecodeBudget | None = None,
) -> Iterator[list[EmbeddedImage]]:
    """`embed_read` with every JPEG decoded, resized and cropped by torchvision on the model's device."""
    pre, device = embedder.preprocessing, embedder.load().device

    def decoded() -> Iterator[tuple[ReadImage, DecodedImage]]:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            outcomes = decode_jpegs_on_device([(i.data, i.sha256) for i in chunk], pre, max_pixels, device, budget)
            for item, outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, ImgsimError):
                    on_error(item, outcome)
                else:
                    yield item, outcome

    yield from embed_batches(decoded(), embedder, batch_size)
