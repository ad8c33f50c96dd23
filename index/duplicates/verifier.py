"""Verifying candidate pairs of stored images: their kept bytes decoded and compared (`verification`), many pairs
at once on every core, each image prepared once per batch, and each pair's verdict remembered (`Verdicts`) so a
pair is verified once, not on every duplicate search."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from index.duplicates import verification
from index.duplicates.verification import NO_EVIDENCE, Evidence, Prepared
from index.errors import ImgsimError
from index.model.imaging import DecodeBudget
from index.storage.store import ImageStore

log = logging.getLogger(__name__)

# Pairs of SHA-256 hex digests, the smaller first.
PairKey = tuple[str, str]
# Prepared images kept while a batch is verified (about 0.5 MB each): a group's members are met again and again.
PREPARED_CACHE_BYTES = 256 * 2**20


def pair_key(a: str, b: str) -> PairKey:
    return (a, b) if a <= b else (b, a)


class Verdicts(Protocol):
    """Where verdicts are remembered, by content: the metadata database, or memory."""

    def get_verdicts(self, keys: Sequence[PairKey], version: str) -> dict[PairKey, Evidence]: ...
    def put_verdicts(self, verdicts: Sequence[tuple[PairKey, Evidence]], version: str) -> None: ...


class MemoryVerdicts:
    """Verdicts kept for the life of the process."""

    def __init__(self) -> None:
        self._known: dict[tuple[PairKey, str], Evidence] = {}
        self._lock = threading.Lock()

    def get_verdicts(self, keys: Sequence[PairKey], version: str) -> dict[PairKey, Evidence]:
        with self._lock:
            return {k: e for k in keys if (e := self._known.get((k, version))) is not None}

    def put_verdicts(self, verdicts: Sequence[tuple[PairKey, Evidence]], version: str) -> None:
        with self._lock:
            self._known.update(((k, version), e) for k, e in verdicts)


class StoredVerdicts:
    """Verdicts kept in the metadata database (table `pair_verdicts`), by content: they hold across restarts,
    re-ingests, the trash and rebuilds, and every replica shares them.

    A verdict, once kept, never changes (a pair is kept once, by content and version), so the last `cached`
    read or written are also kept in memory: a search that meets the same pairs again asks the database
    nothing."""

    def __init__(self, store: ImageStore, cached: int = 100_000) -> None:
        self.store = store
        self._cached = cached
        self._recent: OrderedDict[tuple[PairKey, str], Evidence] = OrderedDict()
        self._lock = threading.Lock()

    def get_verdicts(self, keys: Sequence[PairKey], version: str) -> dict[PairKey, Evidence]:
        with self._lock:
            known = {k: e for k in keys if (e := self._recent.get((k, version))) is not None}
            for k in known:
                self._recent.move_to_end((k, version))
        missing = [k for k in keys if k not in known]
        if missing:
            found = {k: Evidence.from_dict(raw) for k, raw in self.store.pair_verdicts(missing, version).items()}
            self._remember(found.items(), version)
            known.update(found)
        return known

    def put_verdicts(self, verdicts: Sequence[tuple[PairKey, Evidence]], version: str) -> None:
        kept = [(k, e.as_dict()) for k, e in verdicts]
        self.store.remember_verdicts(kept, version)
        self._remember([(k, Evidence.from_dict(raw)) for k, raw in kept], version)  # as the database keeps it

    def _remember(self, verdicts: Iterable[tuple[PairKey, Evidence]], version: str) -> None:
        with self._lock:
            for k, e in verdicts:
                self._recent[(k, version)] = e
                self._recent.move_to_end((k, version))
            while len(self._recent) > self._cached:
                self._recent.popitem(last=False)


class PairVerifier:
    """Evidence for pairs of stored images, read through `read_bytes(sha256)`."""

    def __init__(
        self,
        read_bytes: Callable[[str], bytes],
        verdicts: Verdicts | None = None,
        workers: int = 0,
        cache_bytes: int = PREPARED_CACHE_BYTES,
        max_pixels: int = verification.DEFAULT_MAX_PIXELS,
        budget: DecodeBudget | None = None,
    ) -> None:
        self.read_bytes = read_bytes
        self.max_pixels = max_pixels
        self.budget = budget
        self.verdicts: Verdicts = verdicts or MemoryVerdicts()
        self.workers = workers or max(1, min(8, os.cpu_count() or 1))
        self._cache_bytes = cache_bytes
        self._prepared: OrderedDict[str, Prepared | None] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None

    # --- prepared images ----------------------------------------------------------------------------------

    def _prepare(self, sha: str) -> Prepared | None:
        """The prepared image, or None when its bytes cannot be read now (not remembered: they may come back)."""
        with self._lock:
            if sha in self._prepared:
                self._prepared.move_to_end(sha)
                return self._prepared[sha]
        try:
            prepared: Prepared | None = verification.prepare(self.read_bytes(sha), self.max_pixels, self.budget)
        except (OSError, ImgsimError) as exc:  # the bytes are gone, no longer decode, or not now: no evidence
            log.warning("cannot verify image %s: %s", sha[:12], exc)
            return None
        with self._lock:
            if sha not in self._prepared:
                self._prepared[sha] = prepared
                self._held += prepared.nbytes if prepared is not None else 0
                while self._held > self._cache_bytes and len(self._prepared) > 1:
                    _, dropped = self._prepared.popitem(last=False)
                    self._held -= dropped.nbytes if dropped is not None else 0
        return prepared

    # --- verdicts -----------------------------------------------------------------------------------------

    def copies(self, pairs: Sequence[tuple[str, str]]) -> list[Evidence]:
        """For each (sha, sha): whether the two come from one capture (the `near` level's evidence)."""
        return self._decide(pairs, verification.VERSION, self._copy)

    def identical(self, pairs: Sequence[tuple[str, str]]) -> list[Evidence]:
        """For each (sha, sha): whether the two are the same picture (the `exact` level's evidence)."""
        return self._decide(pairs, verification.VERSION + "/pixels", self._identical)

    def _decide(
        self, pairs: Sequence[tuple[str, str]], version: str, decide: Callable[[str, str], Evidence]
    ) -> list[Evidence]:
        keys = [pair_key(a, b) for a, b in pairs]
        known = self.verdicts.get_verdicts(list(dict.fromkeys(k for k in keys if k[0] != k[1])), version)
        todo = sorted({k for k in keys if k[0] != k[1] and k not in known})
        if todo:
            found = list(self._map(lambda k: decide(*k), todo))
            fresh = list(zip(todo, found, strict=True))
            # A pair whose bytes could not be read has no verdict yet: it is asked again next time.
            self.verdicts.put_verdicts([(k, e) for k, e in fresh if e is not UNREADABLE], version)
            known.update(fresh)
        return [identical_bytes() if k[0] == k[1] else known[k] for k in keys]

    def _map(self, fn: Callable[[PairKey], Evidence], keys: Sequence[PairKey]) -> Iterable[Evidence]:
        # OpenCV and Pillow release the GIL: pairs run on every core, in order of their first image so that
        # the images a batch shares stay prepared.
        if len(keys) < 4 or self.workers <= 1:
            return [fn(k) for k in keys]
        return list(self._pool().map(fn, keys))

    def _pool(self) -> ThreadPoolExecutor:
        """The verifier's worker threads, started on first use and kept: a search verifies a few pairs, and
        starting threads for them cost more than the few milliseconds it saves."""
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="imgsim-verify")
            return self._threads

    def close(self) -> None:
        """Stop the worker threads (a later verification starts them again)."""
        with self._lock:
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True)

    def _copy(self, a: str, b: str) -> Evidence:
        pa, pb = self._prepare(a), self._prepare(b)
        if pa is None or pb is None:
            return UNREADABLE
        return verification.verify(pa, pb)

    def _identical(self, a: str, b: str) -> Evidence:
        pa, pb = self._prepare(a), self._prepare(b)
        if pa is None or pb is None:
            return UNREADABLE
        if not verification.nearly_equal(pa, pb):
            return NO_EVIDENCE
        try:
            same = verification.pixels_identical(self.read_bytes(a), self.read_bytes(b), self.max_pixels, self.budget)
        except (OSError, ImgsimError):
            return UNREADABLE
        return Evidence(True, "identical pixels") if same else NO_EVIDENCE

    def against(self, data: bytes, shas: Sequence[str]) -> list[Evidence]:
        """Whether an image that need not be stored (`data`) is a copy of each stored one (for search)."""
        try:
            query = verification.prepare(data, self.max_pixels, self.budget)
        except (OSError, ImgsimError):
            return [NO_EVIDENCE for _ in shas]

        def one(sha: str) -> Evidence:
            stored = self._prepare(sha)
            return NO_EVIDENCE if stored is None else verification.verify(query, stored)

        if len(shas) < 2 or self.workers <= 1:
            return [one(s) for s in shas]
        return list(self._pool().map(one, shas))


# The evidence of a pair whose bytes could not be read: not a copy now, and not remembered.
UNREADABLE = Evidence(copy=False, kind="none")


def identical_bytes() -> Evidence:
    return Evidence(True, "identical bytes")
