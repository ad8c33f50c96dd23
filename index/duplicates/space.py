"""The duplicate similarity: which part of the stored vectors is compared, and its calibrated levels.

The duplicate similarity of two stored images is the cosine of the pooled-feature (GeM or mean) part of their
vectors: for a definition with logits (`gem3+logits1.3`: normalize(concat(g, 1.3 * l)) with g and l unit
vectors) the first `num_features` dimensions rescaled to unit length are exactly g. The logits part says what
an image shows, so two photos of the same kind of thing come close in it; the features part tells copies of one
photo apart from other photos of the same kind (measured by `tests/benchmarks/duplicates_eval.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from index.errors import InvalidArgument
from index.model.registry import DuplicateLevels, EmbeddingDefinition

LEVELS = ("exact", "near", "similar")
DEFAULT_LEVEL = "near"


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

    def resolve(self, level: str | None = None, threshold: float | None = None) -> float:
        """The threshold for a named level, or the given one (default: `near`).

        Raises:
            InvalidArgument: an unknown level, a threshold outside [0, 1], or both given.
        """
        if level is not None and threshold is not None:
            raise InvalidArgument("give either a level or a threshold, not both")
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise InvalidArgument(f"threshold must be between 0 and 1, got {threshold}")
            return float(threshold)
        level = level or DEFAULT_LEVEL
        if level not in LEVELS:
            raise InvalidArgument(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        return self.levels.threshold(level)

    def radius(self, threshold: float) -> float:
        """An inner product of whole stored vectors that every pair at `threshold` reaches: the candidate radius.

        A stored vector is (g, w * l) / sqrt(1 + w^2), so the whole inner product is
        (g.g' + w^2 l.l') / (1 + w^2), at least (threshold + w^2 * logits_floor) / (1 + w^2).
        """
        if self.dims == self.dim:
            return threshold
        w2 = self.logits_weight**2
        return (threshold + w2 * self.levels.logits_floor) / (1 + w2)

    def part(self, vectors: NDArray[np.float32]) -> NDArray[np.float32]:
        """The compared part of stored vectors, each rescaled to unit length."""
        head = np.asarray(vectors, np.float32)[..., : self.dims]
        norms = np.linalg.norm(head, axis=-1, keepdims=True)
        return head / np.maximum(norms, 1e-12)

    def similarity(self, a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
        """Row-wise duplicate similarity of two stacks of stored vectors."""
        return np.einsum("ij,ij->i", self.part(a), self.part(b)).astype(np.float32)
