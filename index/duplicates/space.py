"""The duplicate similarity: which part of the stored vectors is compared, and its calibrated levels.

The duplicate similarity of two stored images is the cosine of the pooled-feature (GeM or mean) part of their
vectors: for a definition with logits (`gem3+logits1.3`: normalize(concat(g, 1.3 * l)) with g and l unit
vectors) the first `num_features` dimensions rescaled to unit length are exactly g. The logits part says what
an image shows, so two photos of the same kind of thing come close in it; the features part tells copies of one
photo apart from other photos of the same kind (measured by `tests/benchmarks/duplicates_eval.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from index.errors import InvalidArgument
from index.model.registry import DuplicateLevels, EmbeddingDefinition

LEVELS = ("exact", "near", "similar")
DEFAULT_LEVEL = "near"
# What each level means, as the API, the page and the CLI say it.
LEVEL_MEANINGS = {
    "exact": "the same picture: identical bytes, or identical pixels once decoded and turned upright (EXIF)",
    "near": "copies of one capture: resized, recompressed, cropped, mirrored, rotated a little, recoloured, "
    "greyscale, with text, a logo or a border added, or a screenshot of it (checked on the pixels)",
    "similar": "the same scene or object, also in another capture (burst shots, another viewpoint): "
    "similar photos, not copies",
}


@dataclass(frozen=True)
class Criterion:
    """A duplicate search: a named level, or (level None) pairs at least `threshold` similar."""

    level: str | None
    threshold: float  # the duplicate similarity every candidate pair reaches

    @property
    def verified(self) -> bool:
        """Whether a pair must be proven a copy by its pixels (`exact`, `near`), not only look alike."""
        return self.level in ("exact", "near")


@dataclass(frozen=True)
class DuplicateSpace:
    """Which part of the stored vectors the duplicate similarity compares, and its calibrated levels."""

    dims: int  # leading dimensions compared (the pooled features)
    dim: int  # the stored vector's width
    logits_weight: float  # weight of the logits part behind them (0 when there is none)
    levels: DuplicateLevels

    @classmethod
    def of(cls, definition: EmbeddingDefinition, dim: int, num_classes: int = 1000) -> DuplicateSpace:
        has_logits = definition.logits_weight > 0 and dim > num_classes
        dims = dim - num_classes if has_logits else dim
        return cls(dims, dim, definition.logits_weight if has_logits else 0.0, definition.duplicates)

    def resolve(self, level: str | None = None, threshold: float | None = None) -> Criterion:
        """What a duplicate search asks for: a named level (default `near`), or a similarity threshold of one's own.

        Raises:
            InvalidArgument: an unknown level, a threshold outside [floor, 1], or both given.
        """
        if level is not None and threshold is not None:
            raise InvalidArgument("give either a level or a threshold, not both")
        if threshold is not None:
            floor = self.levels.floor
            if not floor <= threshold <= 1.0:
                raise InvalidArgument(
                    f"threshold must be between {floor} and 1, got {threshold}: below {floor} every two photos of "
                    "one kind of thing would be candidates"
                )
            return Criterion(None, float(threshold))
        level = level or DEFAULT_LEVEL
        if level not in LEVELS:
            raise InvalidArgument(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        return Criterion(level, self.levels.threshold(level))

    def radius(self, threshold: float) -> float:
        """An inner product of whole stored vectors that every pair at `threshold` reaches: the candidate radius.

        A stored vector is (g, w * l) / sqrt(1 + w^2), so the whole inner product is
        (g.g' + w^2 l.l') / (1 + w^2), at least (threshold + w^2 * logits_floor) / (1 + w^2).
        """
        if self.dims == self.dim:
            return threshold
        w2 = self.logits_weight**2
        return (threshold + w2 * self.levels.logits_floor) / (1 + w2)

    @property
    def features_length(self) -> float:
        """The length of every stored vector's compared part: (g, w * l) / sqrt(1 + w^2) with g and l unit. A
        stored vector's inner product with a unit query that is zero past `dims` is its duplicate similarity to
        the query times this."""
        return 1.0 if self.dims == self.dim else 1.0 / math.sqrt(1.0 + self.logits_weight**2)

    def part(self, vectors: NDArray[np.float32]) -> NDArray[np.float32]:
        """The compared part of stored vectors, each rescaled to unit length."""
        head = np.asarray(vectors, np.float32)[..., : self.dims]
        norms = np.linalg.norm(head, axis=-1, keepdims=True)
        return head / np.maximum(norms, 1e-12)

    def similarity(self, a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
        """Row-wise duplicate similarity of two stacks of stored vectors."""
        return np.einsum("ij,ij->i", self.part(a), self.part(b)).astype(np.float32)
