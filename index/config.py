"""One settings object for the whole project, read from `IMGSIM_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Metric = Literal["cosine", "euclidean", "dot"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Engine = Literal["auto", "torch", "onnxruntime", "openvino"]
IndexKind = Literal["auto", "flat", "hnsw"]
Scope = Literal["read", "write"]


def _comma_list(value: object) -> object:
    """A list from the environment: comma-separated (`a,b`) or a JSON list (`["a", "b"]`)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


VectorStoreKind = Literal["faiss", "milvus"]
# Defaults shared with `index.model.imaging`, which decodes with them when no settings are at hand.
DECODE_MEMORY_BYTES = 1 << 30
DECODE_TIMEOUT_S = 20.0


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
    hnsw_ef_construction: int = Field(default=80, ge=8, description="HNSW build-time breadth (FAISS and Milvus).")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="Refused before decoding above this.")
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1, description="Largest accepted request body.")
    max_files_per_request: int = Field(default=64, ge=1)
    decode_workers: int = Field(default=0, ge=0, description="Decode threads in the ingest pipeline; 0 = auto.")
    device_decode: bool = Field(default=True, description="On CUDA, decode JPEGs on the GPU (nvJPEG).")
    microbatch_wait_ms: float = Field(default=5.0, ge=0, description="How long the API gathers a batch.")
    inference_queue_limit: int = Field(
        default=256, ge=0, description="Images waiting for the model beyond which the API answers 503; 0 = no limit."
    )
    request_timeout_s: float = Field(
        default=60.0, ge=0, description="How long a request waits for the model before a 503; 0 = no limit."
    )
    trash_retention_days: int = Field(
        default=30,
        ge=0,
        description="Images in the trash longer than this are deleted for good at start; 0 = kept until emptied.",
    )
    save_interval_s: float = Field(
        default=60.0, ge=0, description="The API saves a changed vector index this often (seconds); 0 = only at exit."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="'key:read' or 'key:write' entries, comma-separated; none = the API is open.",
    )
    api_key: str | None = Field(default=None, description="The key the CLI's remote mode sends to the API.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser, comma-separated."
    )

    require_keys: bool = Field(default=False, description="Refuse to start without IMGSIM_API_KEYS.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the API answers to besides localhost and IP addresses, comma-separated; '*' = any.",
    )

    @field_validator("api_keys", "cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        for entry in value:
            key, _, scope = entry.rpartition(":")
            if not key or scope not in ("read", "write"):
                raise ValueError("each API key is 'KEY:read' or 'KEY:write'")
        return value

    def key_scopes(self) -> dict[str, Scope]:
        """API key -> its scope ('write' also allows reading)."""
        scopes: dict[str, Scope] = {}
        for entry in self.api_keys:
            key, _, scope = entry.rpartition(":")
            scopes[key] = "write" if scope == "write" else "read"
        return scopes

    # Past one machine (see docs/past-one-machine.md, "Capacity plan"); the defaults keep everything in `data_dir`.
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the metadata database; default: SQLite in data_dir."
    )
    blob_url: str | None = Field(
        default=None, description="fsspec URL where image bytes are kept (file://, s3://); default: data_dir/blobs."
    )
    vector_store: VectorStoreKind = Field(default="faiss", description="'faiss' (in-process) or 'milvus'.")
    milvus_uri: str = Field(default="", description="Milvus server URL, or a local milvus-lite file path.")
    milvus_token: str = Field(default="", description="Milvus credentials ('user:password' or an API key).")
    milvus_collection: str = Field(default="imgsim", description="Milvus collection holding the vectors.")
    milvus_index: Literal["FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "AUTOINDEX"] = Field(
        default="HNSW", description="Milvus index type (milvus-lite builds FLAT whatever this says)."
    )
    milvus_ivf_nlist: int = Field(default=1024, ge=1, le=65536, description="Clusters of an IVF_* Milvus index.")
    milvus_ivf_nprobe: int = Field(default=32, ge=1, le=65536, description="Clusters an IVF_* search visits.")

    # Untrusted input: what one image or one connection may cost the server.
    decode_memory_bytes: int = Field(
        default=DECODE_MEMORY_BYTES,
        ge=1,
        description="Memory image decoding may hold at once (all requests together); an image needing more: 413.",
    )
    decode_timeout_s: float = Field(
        default=DECODE_TIMEOUT_S, ge=0, description="Longest one image may take to decode (then 422); 0 = no limit."
    )
    header_timeout_s: float = Field(
        default=10.0, ge=0, description="A connection must send a complete request head within this; 0 = no limit."
    )
    min_body_rate: int = Field(
        default=10_000, ge=0, description="Bytes per second a request body must average (after header_timeout_s)."
    )
    ingest_pause_s: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="Testing only: seconds an ingest waits before and after it holds the stored content it found.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
