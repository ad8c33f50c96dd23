"""Response models: the JSON shapes the API promises (and the OpenAPI schema documents)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from index.registry import Prediction
from index.search import SearchHit
from index.service import IndexStats
from index.store import ImageInfo


class PredictionOut(BaseModel):
    # Built straight from the library's dataclasses (`Prediction`, `ImageInfo`, `IndexStats`) by attribute.
    model_config = ConfigDict(from_attributes=True)

    label: str = Field(description="ImageNet class name (synonyms separated by commas)")
    class_index: int = Field(ge=0, description="ImageNet-1k class index, 0..999")
    score: float = Field(ge=0, le=1, description="Softmax probability")


def predictions_out(preds: list[Prediction]) -> list[PredictionOut]:
    return [PredictionOut.model_validate(p) for p in preds]


class EmbeddingOut(BaseModel):
    filename: str
    sha256: str
    embedding: list[float] = Field(description="L2-normalised vector of length `dim`")


class EmbedResponse(BaseModel):
    model: str = Field(description="Model and embedding definition, e.g. 'efficientnet_lite0:mean'")
    dim: int
    results: list[EmbeddingOut]


class PredictionsOut(BaseModel):
    filename: str
    sha256: str
    predictions: list[PredictionOut] = Field(description="Best first")


class PredictResponse(BaseModel):
    model: str
    results: list[PredictionsOut]


class IngestedOut(BaseModel):
    id: int
    filename: str
    sha256: str
    status: Literal["added", "exists"] = Field(description="'exists' when the same bytes were already stored")
    predictions: list[PredictionOut]


class IngestResponse(BaseModel):
    results: list[IngestedOut] = Field(description="One per uploaded file, in upload order")


class QueryOut(BaseModel):
    id: int | None = Field(description="The stored image searched from; null for an uploaded image")
    filename: str
    sha256: str


class HitOut(BaseModel):
    id: int
    filename: str
    sha256: str
    score: float = Field(description="Similarity for cosine and dot (higher is closer); distance for euclidean")
    predictions: list[PredictionOut]

    @classmethod
    def of(cls, hit: SearchHit) -> HitOut:
        return cls.from_info(hit.image, hit.score)

    @classmethod
    def from_info(cls, info: ImageInfo, score: float) -> HitOut:
        return cls(id=info.id, filename=info.filename, sha256=info.sha256, score=score, predictions=info.predictions)


class SearchResponse(BaseModel):
    query: QueryOut
    metric: Literal["cosine", "euclidean", "dot"]
    results: list[HitOut] = Field(description="Best first: highest similarity, or smallest euclidean distance")


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    filename: str = Field(description="The first name the image was stored under")
    names: list[str] = Field(description="Every name the same bytes were uploaded or found under")
    sha256: str
    byte_size: int
    width: int
    height: int
    format: str
    model: str
    predictions: list[PredictionOut]
    created_at: datetime

    @classmethod
    def of(cls, info: ImageInfo) -> ImageOut:
        return cls.model_validate(info)


class ImageList(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[ImageOut]


class LimitsOut(BaseModel):
    max_upload_bytes: int
    max_files_per_request: int
    max_image_pixels: int


class StatsOut(BaseModel):
    count: int
    model: str
    embedding: str
    dim: int
    metric: str = Field(description="The default metric")
    index_type: str = Field(description="'flat' (exact) or 'hnsw' (approximate)")
    device: str
    precision: str
    engine: str = Field(description="Inference engine: 'openvino', 'onnxruntime' or 'torch'")
    limits: LimitsOut

    @classmethod
    def of(cls, stats: IndexStats, limits: LimitsOut) -> StatsOut:
        return cls.model_validate({**asdict(stats), "limits": limits})


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    status: Literal["ready", "starting"]
    model: str | None = None
