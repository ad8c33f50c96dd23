"""One settings object for the whole project, read from `IMGSIM_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Metric = Literal["cosine", "euclidean", "dot"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Engine = Literal["auto", "torch", "onnxruntime", "openvino"]
IndexKind = Literal["auto", "flat", "hnsw"]


class Settings(BaseSettings):
    """Everything configurable; each field can be set as `IMGSIM_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="IMGSIM_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the SQLite store, FAISS file and blobs live.")
    model: str = Field(default="efficientnet_lite0", description="Model name from the registry.")
    embedding: str = Field(default="default", description="Embedding definition (pooling); 'default' = model's.")
    weights_path: Path | None = Field(default=None, description="Local weights file for models without a package.")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    precision: Precision = Field(default="auto", description="Inference precision; 'auto' uses bf16 where native.")
    engine: Engine = Field(default="auto", description="Inference engine; 'auto' = fastest installed for the device.")
    model_cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "imgsim",
        description="Where exported models are kept (made once with torch, then loaded without it).",
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    top_k_predictions: int = Field(default=5, ge=1, le=1000, description="ImageNet predictions stored per image.")
    metric: Metric = "cosine"
    index_kind: IndexKind = Field(default="auto", description="Vector index type; 'auto' picks by size.")
    exact_search_threshold: int = Field(default=20_000, ge=0, description="Above this, 'auto' builds HNSW.")
    hnsw_m: int = Field(default=32, ge=4, le=128)
    hnsw_ef_search: int = Field(default=128, ge=8)
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="Refused before decoding above this.")
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1, description="Largest accepted request body.")
    max_files_per_request: int = Field(default=64, ge=1)
    decode_workers: int = Field(default=0, ge=0, description="Decode threads in the ingest pipeline; 0 = auto.")
    device_decode: bool = Field(default=True, description="On CUDA, decode JPEGs on the GPU (nvJPEG).")
    microbatch_wait_ms: float = Field(default=5.0, ge=0, description="How long the API gathers a batch.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
