"""Near-duplicate images: the duplicate similarity and its levels (`space`), candidate pairs from the vector index
(`candidates`), groups (`grouping`), and the finder the service uses (`finder`).

The duplicate similarity of two stored images is the cosine of the pooled-feature (GeM or mean) part of their
vectors: for a definition with logits (`gem3+logits1.3`: normalize(concat(g, 1.3 * l)) with g and l unit
vectors) the first `num_features` dimensions rescaled to unit length are exactly g. The logits part says what
an image shows, so two photos of the same kind of thing come close in it; the features part tells copies of one
photo apart from other photos of the same kind (measured by `tests/benchmarks/duplicates_eval.py`).

Candidate pairs come from the vector index, a chunk of queries at a time (never an N x N matrix): a range search
on a flat index, k nearest neighbours on HNSW, then each candidate is scored exactly on the features part.
Groups are guarded against chaining (A~B, B~C, A far from C): every member of a group is within the threshold
of the image the group keeps.
"""

from index.duplicates.candidates import Pairs, find_pairs
from index.duplicates.finder import DuplicateFinder, DuplicateReport
from index.duplicates.grouping import (
    DuplicateGroup,
    DuplicateMember,
    components,
    copies,
    describe_group,
    group_is_copies,
    group_pairs,
    group_reason,
    keep_order,
)
from index.duplicates.space import DEFAULT_LEVEL, LEVEL_MEANINGS, LEVELS, Criterion, DuplicateSpace

__all__ = [
    "DEFAULT_LEVEL",
    "LEVELS",
    "LEVEL_MEANINGS",
    "Criterion",
    "DuplicateFinder",
    "DuplicateGroup",
    "DuplicateMember",
    "DuplicateReport",
    "DuplicateSpace",
    "Pairs",
    "components",
    "copies",
    "describe_group",
    "find_pairs",
    "group_is_copies",
    "group_pairs",
    "group_reason",
    "keep_order",
]
