"""Search: resolve a reference, find nearest neighbours in the vector index, score a known set."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from index.config import Metric
from index.duplicates.space import DuplicateSpace
from index.duplicates.verification import Evidence
from index.duplicates.verifier import PairVerifier
from index.errors import AmbiguousReference, ImageInTrash, InvalidArgument, UnknownReference
from index.model.registry import Prediction
from index.model.words import vocabulary
from index.pipeline import ImageSource
from index.storage.store import ImageInfo, ImageStore
from index.vectors import ClassFilteredSearch, VectorStore
from index.vectors.faiss_index import VectorIndex, scores_for_metric

METRICS: tuple[Metric, ...] = ("cosine", "euclidean", "dot")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# (sha256, embedding, predictions) per source, in order: what `Ingestor.embed` returns.
EmbedFn = Callable[[Sequence[ImageSource]], list[tuple[str, NDArray[np.float32], list[Prediction]]]]


@dataclass(frozen=True)
class SearchHit:
    image: ImageInfo
    score: float
    duplicate: bool = False  # a stored copy of the query, proven by the pixels (the `near` level): ranked first
    evidence: Evidence | None = None  # the verification's evidence, for a duplicate


@dataclass(frozen=True)
class QueryImage:
    """Where a query's pixels are, so stored copies of it can be verified: a stored image, or uploaded bytes."""

    sha256: str
    data: bytes | None = None  # None: the stored image's kept bytes


# Neighbours fetched beyond k: the copies of the query are looked for among that many by the features part, and
# a copy the whole vector ranks a little lower is moved up with its inner product known.
DUPLICATE_CANDIDATES = 20
# Hits at the `near` level's similarity that are verified as copies of the query, the most similar first.
VERIFIED_CANDIDATES = 6
# And the few most similar hits below it, down to this: a 64 px copy or a screenshot can fall under the `near`
# similarity (0.44 to 0.54 for 11 of the 12 held-out copies the search missed) and still be proven on its pixels.
# Two found 5 of them (held-out recall@1 0.9944 -> 0.9967), four 7 (0.9977) at a verification or two more a search.
LOOSE_CANDIDATES = 2
LOOSE_FLOOR = 0.40


def resolve_label(label: str) -> set[int]:
    """ImageNet class indices that `label` names: a class's full name or synonym, or a WordNet word of the class
    or of one of its ancestors ("dog", "bird"), in any case, or a plural of one ("dogs").

    Raises:
        InvalidArgument: nothing is called that (the message suggests close words).
    """
    words = vocabulary()
    matches = words.classes(label)
    if not matches:
        close = words.close_to(label)
        hint = f"; did you mean {', '.join(repr(w) for w in close)}?" if close else ""
        raise InvalidArgument(f"no ImageNet class is called {label!r}, nor is any under a word so spelled{hint}")
    return set(matches)


def _to_verify(similar: list[tuple[int, float]], near: float) -> list[int]:
    """Of (id, duplicate similarity) pairs, the ids whose pixels are checked for a copy of the query: the
    `VERIFIED_CANDIDATES` most similar at the `near` similarity, and the `LOOSE_CANDIDATES` most similar just
    below it (down to `LOOSE_FLOOR`)."""
    by_similarity = sorted(similar, key=lambda pair: -pair[1])
    at_near = [pair for pair in by_similarity if pair[1] >= near][:VERIFIED_CANDIDATES]
    loose = [pair for pair in by_similarity if LOOSE_FLOOR <= pair[1] < near][:LOOSE_CANDIDATES]
    return [i for i, _ in at_near + loose]


def _as_id(ref: str) -> int | None:
    """The image id `ref` can be: ASCII digits only ('²'.isdigit() is true but int() refuses it), within SQLite's
    64-bit integers."""
    return int(ref) if ref.isascii() and ref.isdigit() and int(ref) < 2**63 else None


def _live(info: ImageInfo, ref: str) -> ImageInfo:
    """`info`, unless it is in the trash.

    Raises:
        ImageInTrash: it is.
    """
    if info.trashed_at is not None:
        raise ImageInTrash(f"{ref!r} is image {info.id} ({info.filename}), which is in the trash; restore it first")
    return info


class Searcher:
    """Read-only queries over a store and its vector index."""

    def __init__(
        self,
        store: ImageStore,
        vectors: VectorStore,
        embed: EmbedFn,
        duplicates: DuplicateSpace | None = None,
        verifier: PairVerifier | None = None,
    ) -> None:
        self.store = store
        self.vectors = vectors
        self._embed = embed
        # With a duplicate space and a verifier, stored copies of the query (proven by their pixels, as at the
        # `near` level) rank above everything else.
        self.duplicates = duplicates
        self.verifier = verifier

    def resolve_ref(self, ref: str) -> ImageInfo:
        """The stored image named by `ref`: an id, a SHA-256, or a file name that names exactly one image.

        Raises:
            UnknownReference: nothing matches (ImageInTrash: only an image in the trash does).
            AmbiguousReference: a file name matches several images.
        """
        return self._resolve(ref)[0]

    def _resolve(self, ref: str, dim: int | None = None) -> tuple[ImageInfo, NDArray[np.float32] | None]:
        """`resolve_ref`, and given `dim`, the image's stored vector when `ref` is its id (what a page or a client
        mostly sends: both in one read); None otherwise."""
        ref = ref.strip()
        if (image_id := _as_id(ref)) is not None:
            if dim is not None and (found := self.store.get_with_embedding(image_id, dim)) is not None:
                return _live(found[0], ref), found[1]
            if dim is None and (info := self.store.get(image_id)) is not None:
                return _live(info, ref), None
        if _SHA256.match(ref.lower()) and (info := self.store.find_by_sha(ref.lower())) is not None:
            return _live(info, ref), None
        named = self.store.ids_by_name(ref)
        live = self.store.live_among(named)
        if len(live) > 1:
            raise AmbiguousReference(f"{ref!r} names {len(live)} different images; use an id or a SHA-256")
        # Only images in the trash have that name: say so about the first of them.
        info = self.store.get(live[0] if live else min(named)) if named else None
        if info is None:
            raise UnknownReference(f"no stored image matches {ref!r}")
        return _live(info, ref), None

    def search_vector(
        self,
        query: NDArray[np.float32],
        k: int = 10,
        metric: str = "cosine",
        label: str | None = None,
        exclude: frozenset[int] = frozenset(),
        source: QueryImage | None = None,
    ) -> list[SearchHit]:
        """The k stored images nearest to `query`, best first; with the query's `source`, its stored copies
        first (see `_copies_first`).

        Raises:
            InvalidArgument: bad k, metric or label.
        """
        if metric not in METRICS:
            raise InvalidArgument(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if k < 1:
            raise InvalidArgument("k must be at least 1")
        with self.store.reading():  # the few reads below share one database session
            return self._search_vector(query, k, metric, label, exclude, source)

    def _search_vector(
        self,
        query: NDArray[np.float32],
        k: int,
        metric: str,
        label: str | None,
        exclude: frozenset[int],
        source: QueryImage | None,
    ) -> list[SearchHit]:
        classes = resolve_label(label) if label else None
        # A vector store that keeps each image's classes filters by them itself; otherwise the store's ids do.
        by_class = self.vectors if classes is not None and isinstance(self.vectors, ClassFilteredSearch) else None
        allowed = self.store.ids_with_labels(classes) if classes is not None and by_class is None else None
        if allowed is not None and len(allowed) == 0:
            return []
        if isinstance(self.vectors, VectorIndex) and len(self.vectors) == 0:  # a server answers an empty search
            return []
        space = self.duplicates if source is not None else None
        extra = DUPLICATE_CANDIDATES if space is not None else 0
        queries, wanted = [query], [k + len(exclude) + extra]
        if space is not None and space.dims < query.shape[-1]:
            # A copy whose logits moved (a 64 px copy, a screenshot) can fall out of the whole vector's nearest:
            # the features part alone finds it (zero logits: the stored vectors' inner product with this is their
            # duplicate similarity to the query times `features_length`), and it is verified with the rest,
            # shown only if proven a copy. Both queries go in one search (one round trip to a vector server).
            features = np.zeros_like(query)
            features[: space.dims] = space.part(query)
            queries.append(features)
            wanted.append(wanted[0])
        batch = np.stack(queries)
        if by_class is not None and classes is not None:
            scores, ids = by_class.search_classes(batch, max(wanted), classes)
        else:
            scores, ids = self.vectors.search(batch, max(wanted), allowed)
        nearest = [
            [
                (int(i), float(v))
                for i, v in zip(ids[row, :n], scores[row, :n], strict=True)
                if i >= 0 and i not in exclude
            ]
            for row, n in enumerate(wanted)
        ]
        inner = dict(nearest[0])  # inner products with the query, by id
        order = list(inner)
        candidates: list[int] = []
        if space is not None:
            # The duplicate similarity straight from the search's scores: no stored vector is read for it.
            if len(nearest) > 1:
                scale, scored = 1.0 / space.features_length, nearest[1]
            else:  # the whole vector is the compared part
                scale, scored = 1.0 / max(float(np.linalg.norm(query)), 1e-12), nearest[0]
            candidates = _to_verify([(i, v * scale) for i, v in scored], space.levels.near)
        # Only the hits that can be shown are read whole (and the candidates, for their sha256): one whose row is
        # gone or in the trash (since the search started) is dropped, never returned.
        readable = order[: k if space is not None else k + len(exclude)]
        infos = self.store.get_many(list(dict.fromkeys(readable + candidates)))
        live = {i: info for i, info in infos.items() if info.trashed_at is None}
        copies = self._copies([i for i in candidates if i in live], live, source)
        order = list(copies) + [i for i in readable if i not in copies]
        shown = [i for i in order if i in live][:k]
        unscored = [i for i in shown if i not in inner]  # found by the features part alone (a copy, mostly)
        if unscored:
            try:
                inner.update(zip(unscored, (self._stored(unscored) @ query).tolist(), strict=True))
            except KeyError:  # deleted meanwhile
                shown = [i for i in shown if i in inner]
        metric_scores = scores_for_metric(np.array([inner[i] for i in shown], np.float32), metric)
        return [
            SearchHit(live[i], float(m), duplicate=i in copies, evidence=copies.get(i))
            for i, m in zip(shown, metric_scores, strict=True)
        ]

    def _stored(self, ids: list[int]) -> NDArray[np.float32]:
        """The stored vectors of `ids` (KeyError for one that is gone)."""
        if not ids:
            return np.empty((0, self.vectors.meta.dim), np.float32)
        if isinstance(self.vectors, VectorIndex):
            return self.vectors.vectors_of(np.array(ids, np.int64))
        return self.store.embeddings(ids, self.vectors.meta.dim)  # a vector server: the copies in the database

    def _copies(
        self, candidates: list[int], infos: dict[int, ImageInfo], source: QueryImage | None
    ) -> dict[int, Evidence]:
        """Those of `candidates` (ids, most similar first, each in `infos`) that are stored copies of the query,
        proven by the pixels as at the `near` level, with the verification's evidence."""
        if self.verifier is None or source is None or not candidates:
            return {}
        hashes = [infos[i].sha256 for i in candidates]
        if source.data is None:
            found = self.verifier.copies([(source.sha256, sha) for sha in hashes])
        else:
            found = self.verifier.against(source.data, hashes)
        return {i: evidence for i, evidence in zip(candidates, found, strict=True) if evidence.copy}

    def search_by_ref(
        self, ref: str, k: int = 10, metric: str = "cosine", label: str | None = None
    ) -> tuple[ImageInfo, list[SearchHit]]:
        """Nearest neighbours of a stored image, the image itself left out.

        Raises:
            UnknownReference, AmbiguousReference, InvalidArgument.
        """
        dim = self.vectors.meta.dim
        with self.store.reading():
            info, query = self._resolve(ref, dim)
            if query is None:
                query = self.store.embeddings([info.id], dim)[0]
            source = QueryImage(info.sha256)
            return info, self.search_vector(query, k, metric, label, exclude=frozenset({info.id}), source=source)

    def search_by_image(
        self, data: bytes, name: str, k: int = 10, metric: str = "cosine", label: str | None = None
    ) -> tuple[str, list[SearchHit]]:
        """Nearest neighbours of an image that need not be stored (nothing is stored). Returns its sha256.

        Raises:
            ImageDecodeError, ImageTooLarge, InvalidArgument.
        """
        ((sha, vector, _preds),) = self._embed([ImageSource(name=name, data=data)])
        return sha, self.search_vector(vector, k, metric, label, source=QueryImage(sha, data))

    def rank(self, ref_id: int, candidate_ids: Sequence[int], metric: str = "cosine") -> list[tuple[int, float]]:
        """Exact scores of `candidate_ids` against a stored image, best first (for ranking a known set)."""
        if metric not in METRICS:
            raise InvalidArgument(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        dim = self.vectors.meta.dim
        query = self.store.embeddings([ref_id], dim)[0]
        unique = list(dict.fromkeys(candidate_ids))
        inner = self.store.embeddings(unique, dim) @ query
        scores = scores_for_metric(inner, metric)
        order = np.argsort(scores if metric == "euclidean" else -scores, kind="stable")
        return [(unique[i], float(scores[i])) for i in order]
