"""The exported model: the whole embedding computation (normalisation, network, pooling, softmax) as one
ONNX graph, made once with torch and cached on disk.

The cache file is keyed by everything that changes its contents: the weights' SHA-256, the embedding
definition, the preprocessing, the precision (and for int8 the calibration images) and the engine's version.
A run that finds it never imports torch or timm.

The default model's fp32 export under its default definition ships in the package (`SHIPPED_DIR`, under the
name the cache would give it), so a CPU install needs no torch: int8 is quantized from it without torch too.
The export is deterministic; `python -m index.model.engines.export` remakes the shipped file, and a test
checks that a fresh export gives its vectors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.errors import EngineUnavailable
from index.model.engines.prepare import preparing
from index.model.registry import (
    DEFAULT_EMBEDDING,
    REGISTRY,
    EmbeddingDefinition,
    ModelSpec,
    Preprocessing,
    model_preprocessing,
    resolve_embedding,
)

log = logging.getLogger(__name__)

# Bumped whenever the exported graph changes shape or meaning.
EXPORT_FORMAT = 1
OPSET = 17
INPUT_NAME = "crops"
OUTPUT_NAMES = ("embeddings", "probabilities")
# Calibration photos for int8 (crops of the repository's sample photos, shipped with the package, so the
# quantized model is the same wherever it is made); each is also used flipped and re-cropped.
CALIBRATION_DIR = Path(__file__).resolve().parents[1] / "data" / "calibration"
# Exports that ship with the package, found by the name `exported_path` gives them.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "exports"
SHIPPED_MODEL = "efficientnet_lite0"
# What making an export costs on a 2-core machine (measured: torch's import and the trace, ONNX Runtime's
# calibration), for the notice that says how long the one-off wait is.
EXPORT_SECONDS = 15
QUANTIZE_SECONDS = 13
# How to get torch, for the errors of a default install asked for something only torch can make.
TORCH_EXTRA = "pip install -r requirements-torch.txt"


def cache_key(spec: ModelSpec, embedding: EmbeddingDefinition, weights_hash: str, precision: str, tool: str) -> str:
    pre = model_preprocessing(spec)
    parts: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "model": spec.name,
        "timm": spec.timm_name,
        "weights": weights_hash,
        "embedding": [embedding.name, embedding.pooling, embedding.gem_p, embedding.logits_weight],
        "preprocessing": [pre.input_size, list(pre.mean), list(pre.std)],
        "precision": precision,
        "tool": tool,
    }
    if precision == "int8":
        parts["calibration"] = calibration_digest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def exported_path(
    settings: Settings,
    spec: ModelSpec,
    embedding: EmbeddingDefinition,
    weights_hash: str,
    precision: str,
    tool: str,
) -> Path:
    """Where the export for these inputs is cached; `tool` names what made it and its version."""
    key = cache_key(spec, embedding, weights_hash, precision, tool)
    safe_model = spec.name.replace("/", "_")
    return settings.model_cache_dir / f"{safe_model}-{embedding.name}-{precision}-{key}.onnx"


def find_export(path: Path) -> Path | None:
    """The export at `path` in the cache, else the shipped file of the same name, else None."""
    if path.is_file():
        return path
    shipped = SHIPPED_DIR / path.name
    return shipped if shipped.is_file() else None


def ensure_exported(
    settings: Settings,
    spec: ModelSpec,
    embedding: EmbeddingDefinition,
    precision: str,
    path: Path,
    fp32: Path | None = None,
) -> Path:
    """The export at `path` (cached or shipped), made now if there is none: fp32 with torch, int8 by
    quantizing the fp32 export at `fp32` (itself made first when needed), which needs no torch.

    Raises:
        WeightsNotFound: the weights file is missing.
        EngineUnavailable: torch or onnx, needed to export, is not installed.
    """
    if (found := find_export(path)) is not None:
        return found
    if precision == "int8" and fp32 is None:
        raise ValueError("an int8 export is quantized from the fp32 export: give its path")
    source = ensure_exported(settings, spec, embedding, "fp32", fp32) if fp32 is not None else None
    if source is None:
        require_exporter(spec, embedding)  # before the wait is announced
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s (%s, %s) to %s, once", spec.name, embedding.name, precision, path)
    seconds, steps = (QUANTIZE_SECONDS, 1) if source is not None else (EXPORT_SECONDS, 2)
    with (
        preparing(f"{precision} export of {spec.name} ({embedding.name})", seconds, steps) as step,
        tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp,
    ):
        result = Path(tmp) / f"{precision}.onnx"
        if source is not None:
            step("calibrating on the shipped photos")
            quantize_int8(source, result, model_preprocessing(spec))
        else:
            step("building the network with torch")
            export_onnx(settings, spec, embedding, result, on_traced=lambda: step("tracing the graph"))
        # Another process may export the same file at the same time: each writes its own and renames it
        # into place atomically, so a reader never sees half a file.
        os.replace(result, path)
    return path


def require_exporter(spec: ModelSpec, embedding: EmbeddingDefinition) -> None:
    """Check that what makes an export (torch, timm, onnx) is installed, before any of it is imported.

    Raises:
        EngineUnavailable: one of them is not (named in one line, with how to install it).
    """
    missing = [name for name in ("torch", "timm", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise EngineUnavailable(
            f"{spec.name} with the {embedding.name} embedding is exported once with torch, and "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: {TORCH_EXTRA} "
            f"(only {SHIPPED_MODEL} with {DEFAULT_EMBEDDING} ships ready to run)"
        )


def export_onnx(
    settings: Settings,
    spec: ModelSpec,
    embedding: EmbeddingDefinition,
    out: Path,
    on_traced: Callable[[], None] | None = None,
) -> None:
    """Export the fp32 embedding graph (uint8 NHWC crops in, vectors and probabilities out) to `out`.

    Raises:
        EngineUnavailable: torch, timm or onnx is not installed.
    """
    require_exporter(spec, embedding)
    import onnx  # noqa: F401  (the exporter needs it)
    import torch

    from index.model.engines.torch_engine import embedding_graph

    pre = model_preprocessing(spec)
    graph = embedding_graph(settings, spec, embedding, pre.mean, pre.std)
    if on_traced is not None:
        on_traced()
    example = torch.zeros((2, pre.input_size, pre.input_size, 3), dtype=torch.uint8)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with torch.inference_mode(), warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated; it still exports this graph exactly.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            (example,),
            str(out),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            # The TorchScript exporter: the graph is a plain feed-forward network, and this one needs no
            # further packages.
            dynamo=False,
        )


def calibration_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(CALIBRATION_DIR.glob("*.jpg")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def calibration_crops(pre: Preprocessing) -> NDArray[np.uint8]:
    """Crops to calibrate int8 ranges on: the shipped photos, each as decoded, mirrored, and re-cropped."""
    from PIL import Image, ImageOps

    from index.model.imaging import decode_for_model

    crops: list[NDArray[np.uint8]] = []
    for path in sorted(CALIBRATION_DIR.glob("*.jpg")):
        data = path.read_bytes()
        crop = decode_for_model(data, pre, 10**9).crop
        assert isinstance(crop, np.ndarray)
        crops += [crop, crop[:, ::-1].copy()]
        with Image.open(path) as img:
            w, h = img.size
            zoom = img.convert("RGB").crop((w // 8, h // 8, w - w // 8, h - h // 8))
            zoom = ImageOps.fit(zoom, (pre.input_size, pre.input_size), Image.Resampling.BICUBIC)
            crops.append(np.asarray(zoom, dtype=np.uint8))
    if not crops:
        raise EngineUnavailable(f"no calibration photos in {CALIBRATION_DIR}")
    return np.stack(crops)


def int8_reduce_range() -> bool:
    """Whether int8 weights keep to 7 bits here: an x86 CPU without VNNI multiplies u8 by s8 with vpmaddubsw, whose
    int16 sums saturate on 8-bit weights (the vectors then drift: cosine 0.93 to fp32 seen on an AVX2-only CPU);
    ONNX Runtime's `reduce_range` avoids it. Read off the CPU at run time."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return not ({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags.split()))


def quantize_int8(fp32: Path, out: Path, pre: Preprocessing) -> None:
    """Post-training static quantization (ONNX Runtime, QDQ format: int8 weights per channel, uint8
    activations), calibrated on `calibration_crops`.

    The pointwise convolutions run in int8; the stem, the depthwise convolutions and the classifier stay
    fp32 (quantizing them cost the most agreement with fp32: top-1 agreement 0.89 with everything in int8,
    0.98 with these kept), as do pooling, normalisation and softmax."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise EngineUnavailable(f"int8 quantization needs onnxruntime: {exc}") from exc

    crops = calibration_crops(pre)
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    depthwise = [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    keep_fp32 = [convs[0].name, *depthwise]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[dict[str, NDArray[np.uint8]]] = (
                {INPUT_NAME: crops[i : i + 8]} for i in range(0, len(crops), 8)
            )

        def get_next(self) -> dict[str, NDArray[np.uint8]] | None:
            return next(self._batches, None)

    # The quantizer advises, through the root logger, a pre-processing pass this graph does not need.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(
            str(fp32),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=keep_fp32,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=int8_reduce_range(),
        )
    finally:
        root.setLevel(level)


def remake_shipped_export() -> Path:
    """Export the default model under the default definition (fp32) into `SHIPPED_DIR`, replacing what is
    there; needs torch. The file name carries the cache key, so a changed input gives a new name."""
    from index.model.engines.exported import FP32_TOOL
    from index.model.weights import file_sha256

    spec, embedding = REGISTRY[SHIPPED_MODEL], resolve_embedding(DEFAULT_EMBEDDING)
    settings = Settings()
    weights_hash = file_sha256(spec.weights_file(settings))
    name = exported_path(settings, spec, embedding, weights_hash, "fp32", FP32_TOOL).name
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / name
        export_onnx(settings, spec, embedding, fresh)
        SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
        for old in SHIPPED_DIR.glob("*.onnx"):
            old.unlink()
        shutil.copyfile(fresh, SHIPPED_DIR / name)
    return SHIPPED_DIR / name


if __name__ == "__main__":
    print(remake_shipped_export())
