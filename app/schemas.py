"""Request and response models: the shapes the API promises (and the OpenAPI schema documents)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field

from index.config import Metric
from index.duplicates import DuplicateGroup, DuplicateMember, group_is_copies, group_reason
from index.duplicates.decisions import Decision
from index.duplicates.verification import Evidence
from index.model.registry import Prediction
from index.search import SearchHit
from index.service import IndexStats
from index.storage.store import ImageInfo

SHA_CAT = "9540e8d656047041ae92c8c19f8aeb2baa4ede5a17030470e8a1cfc7bb26182a"
SHA_CROP = "7e0b67f70572c35cfed8443362c7fa82bf94061e4884d6af098175e8012a9221"
CAT_PREDICTIONS: list[dict[str, Any]] = [
    {"label": "Egyptian cat", "class_index": 285, "score": 0.3765},
    {"label": "tiger cat", "class_index": 282, "score": 0.3728},
    {"label": "tabby, tabby cat", "class_index": 281, "score": 0.1697},
]


def examples(*values: dict[str, Any]) -> ConfigDict:
    """A model config whose JSON schema shows these example values (in /docs and /redoc)."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


class UploadFiles(BaseModel):
    """Images as multipart/form-data: one part named `files` per image."""

    files: list[UploadFile] = Field(
        description="One or more images (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF, camera RAW)"
    )


class QueryImage(BaseModel):
    """One image as multipart/form-data, in a part named `file`."""

    file: UploadFile = Field(description="The query image (it is not stored)")
    # Also accepted beside the file, as HTML forms send them (the query string works too, not both differing).
    k: int | None = Field(default=None, ge=1, le=1000, description="`k` as a form field")
    metric: Metric | None = Field(default=None, description="`metric` as a form field")
    label: str | None = Field(default=None, max_length=200, description="`label` as a form field")


class PredictionOut(BaseModel):
    # Built straight from the library's dataclasses (`Prediction`, `ImageInfo`, `IndexStats`) by attribute.
    model_config = ConfigDict(from_attributes=True)

    label: str = Field(description="ImageNet class name (synonyms separated by commas)")
    class_index: int = Field(ge=0, description="ImageNet-1k class index, 0..999")
    score: float = Field(ge=0, le=1, description="Softmax probability")


def predictions_out(preds: list[Prediction]) -> list[PredictionOut]:
    return [PredictionOut.model_validate(p) for p in preds]


class EmbeddingOut(BaseModel):
    filename: str = Field(description="The uploaded file's name, without any directory part")
    sha256: str = Field(description="SHA-256 of the uploaded bytes (hex)")
    embedding: list[float] = Field(description="L2-normalised vector of length `dim`")


class EmbedResponse(BaseModel):
    model_config = examples(
        {
            "model": "efficientnet_lite0:gem3+logits1.3",
            "dim": 2280,
            "results": [{"filename": "cat.png", "sha256": SHA_CAT, "embedding": [0.0132, -0.0041, 0.0275]}],
        }
    )

    model: str = Field(description="Model and embedding definition, e.g. 'efficientnet_lite0:mean'")
    dim: int = Field(description="Length of every embedding")
    results: list[EmbeddingOut] = Field(description="One per uploaded file, in upload order")


class PredictionsOut(BaseModel):
    filename: str = Field(description="The uploaded file's name, without any directory part")
    sha256: str = Field(description="SHA-256 of the uploaded bytes (hex)")
    predictions: list[PredictionOut] = Field(description="Best first")


class PredictResponse(BaseModel):
    model_config = examples(
        {
            "model": "efficientnet_lite0:gem3+logits1.3",
            "results": [{"filename": "cat.png", "sha256": SHA_CAT, "predictions": CAT_PREDICTIONS}],
        }
    )

    model: str = Field(description="Model and embedding definition that produced the predictions")
    results: list[PredictionsOut] = Field(description="One per uploaded file, in upload order")


class IngestedOut(BaseModel):
    id: int = Field(description="The stored image's id (the existing one when the bytes were already stored)")
    filename: str = Field(description="The uploaded file's name, without any directory part")
    sha256: str = Field(description="SHA-256 of the uploaded bytes (hex): the image's identity")
    status: Literal["added", "exists", "restored"] = Field(
        description="'exists' when the same bytes were already stored; 'restored' when they were in the trash "
        "(taken out of it, under the same id)"
    )
    predictions: list[PredictionOut] = Field(description="Top ImageNet classes, best first")


class IngestResponse(BaseModel):
    model_config = examples(
        {
            "results": [
                {"id": 1, "filename": "cat.png", "sha256": SHA_CAT, "status": "added", "predictions": CAT_PREDICTIONS},
                {
                    "id": 1,
                    "filename": "cat copy.png",
                    "sha256": SHA_CAT,
                    "status": "exists",
                    "predictions": CAT_PREDICTIONS,
                },
            ]
        }
    )

    results: list[IngestedOut] = Field(description="One per uploaded file, in upload order")


class QueryOut(BaseModel):
    id: int | None = Field(description="The stored image searched from; null for an uploaded image")
    filename: str = Field(description="Its (first) file name")
    sha256: str = Field(description="SHA-256 of its bytes (hex)")


class EvidenceOut(BaseModel):
    """What the pixels of an image and the kept one say (the verification of `exact` and `near`)."""

    copy_: bool = Field(
        alias="copy", description="Proven to come from one capture (for `exact`: to be the same picture)"
    )
    kind: Literal["identical bytes", "identical pixels", "aligned", "framing", "none"] = Field(
        description="'identical bytes'/'identical pixels' (exact); 'aligned': local features matched under a "
        "scale-rotation-translation (mirrored too) and the aligned pixels agree; 'framing': the same framing "
        "agrees pixel for pixel; 'none': no such evidence"
    )
    inliers: int | None = Field(default=None, description="Matched points the alignment explains")
    flow_px: float | None = Field(
        default=None, description="Residual optical flow after alignment (75th percentile, px at the compared scale)"
    )
    spread: float | None = Field(default=None, description="Share of the overlap the matched points span")
    scale: float | None = Field(default=None, description="Size of the kept image over this one's")
    rotation: float | None = Field(default=None, description="Rotation between the two, degrees")
    mirrored: bool = Field(default=False, description="One is the other mirrored")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @classmethod
    def of(cls, evidence: Evidence | None) -> EvidenceOut | None:
        return None if evidence is None else cls.model_validate(evidence.as_dict())


class HitOut(BaseModel):
    id: int = Field(description="Stored image id")
    filename: str = Field(description="The first name the image was stored under")
    sha256: str = Field(description="SHA-256 of its bytes (hex)")
    score: float = Field(description="Similarity for cosine and dot (higher is closer); distance for euclidean")
    predictions: list[PredictionOut] = Field(description="Its top ImageNet classes, best first")
    duplicate: bool = Field(
        default=False,
        description="A stored copy of the query, proven by the pixels as at the `near` level: such hits come first",
    )
    evidence: EvidenceOut | None = Field(default=None, description="For a duplicate: the verification's evidence")

    @classmethod
    def of(cls, hit: SearchHit) -> HitOut:
        update = {"duplicate": hit.duplicate, "evidence": EvidenceOut.of(hit.evidence)}
        return cls.from_info(hit.image, hit.score).model_copy(update=update)

    @classmethod
    def from_info(cls, info: ImageInfo, score: float) -> HitOut:
        return cls(id=info.id, filename=info.filename, sha256=info.sha256, score=score, predictions=info.predictions)


class SearchResponse(BaseModel):
    model_config = examples(
        {
            "query": {"id": 1, "filename": "cat.png", "sha256": SHA_CAT},
            "metric": "cosine",
            "results": [
                {
                    "id": 2,
                    "filename": "cat_crop.jpg",
                    "sha256": SHA_CROP,
                    "score": 0.9673,
                    "predictions": CAT_PREDICTIONS,
                    "duplicate": True,
                    "evidence": {
                        "copy": True,
                        "kind": "aligned",
                        "inliers": 212,
                        "flow_px": 0.0812,
                        "spread": 0.7431,
                        "scale": 1.1364,
                        "rotation": 0.0114,
                        "mirrored": False,
                    },
                }
            ],
        }
    )

    query: QueryOut = Field(description="The image searched from")
    metric: Literal["cosine", "euclidean", "dot"] = Field(description="The metric `score` is in")
    results: list[HitOut] = Field(
        description="Stored copies of the query first (`duplicate`), then the rest best first: highest "
        "similarity, or smallest euclidean distance"
    )


class ReplacedCopyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str = Field(description="A file name the copy was stored under")
    path: str = Field(description="Its path on disk when it was ingested from a folder ('' for an upload)")
    sha256: str = Field(description="SHA-256 of the copy's bytes (the copy may since have been deleted for good)")


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Stored image id (never reused)")
    filename: str = Field(description="The first name the image was stored under")
    names: list[str] = Field(description="Every name the same bytes were uploaded or found under")
    sha256: str = Field(description="SHA-256 of its bytes (hex): the image's identity")
    byte_size: int = Field(description="Size of the stored bytes")
    width: int = Field(description="Width in pixels (after EXIF orientation)")
    height: int = Field(description="Height in pixels (after EXIF orientation)")
    format: str = Field(description="Image format, e.g. 'JPEG', 'PNG', 'HEIF' (HEIC) or 'AVIF'")
    model: str = Field(description="Model and embedding definition of its stored embedding")
    predictions: list[PredictionOut] = Field(description="Top ImageNet classes, best first")
    created_at: datetime = Field(description="When it was first stored (UTC)")
    trashed_at: datetime | None = Field(
        default=None, description="When it was moved to the trash (UTC); null while it is in the library"
    )
    replaced: list[ReplacedCopyOut] = Field(
        default_factory=list,
        description="Files of duplicate copies moved to the trash when their group was resolved in favour of this "
        "image (`POST /duplicates/resolve`), so that no name or path is lost",
    )
    taken_at: datetime | None = Field(
        default=None,
        description="When the photo was taken, from its EXIF (DateTimeOriginal): the camera's clock, no time zone",
    )
    camera_make: str | None = Field(default=None, description="The camera's maker, from its EXIF (e.g. 'Apple')")
    camera_model: str | None = Field(default=None, description="The camera's model, from its EXIF")
    lens: str | None = Field(default=None, description="The lens, from its EXIF")
    latitude: float | None = Field(default=None, description="Where it was taken, from its EXIF GPS: degrees north")
    longitude: float | None = Field(default=None, description="Where it was taken, from its EXIF GPS: degrees east")

    @classmethod
    def of(cls, info: ImageInfo) -> ImageOut:
        return cls.model_validate(info)


class PrunedImageOut(ImageOut):
    paths: list[str] = Field(description="The files it was found under, all gone from the server's disk")

    @classmethod
    def of(cls, info: ImageInfo) -> PrunedImageOut:
        return cls.model_validate(info)


class PruneOut(BaseModel):
    dry_run: bool = Field(description="true: nothing was moved, `items` is what a prune would move")
    total: int = Field(description="How many images were (or would be) moved to the trash")
    items: list[PrunedImageOut] = Field(description="Those images, in id order, as they were before the move")


class ImageList(BaseModel):
    total: int = Field(description="Number of stored images (not counting the trash)")
    offset: int = Field(description="Images skipped before this page")
    limit: int = Field(description="Largest page size asked for")
    items: list[ImageOut] = Field(description="This page, in the order asked for (`sort`; id order by default)")


class LabelWordOut(BaseModel):
    word: str = Field(description="A `label` filter value, lower case: a class name, synonym or WordNet word")
    classes: int = Field(ge=1, description="How many ImageNet classes it names")


class LabelWordList(BaseModel):
    model_config = examples({"labels": [{"word": "dog", "classes": 118}, {"word": "dog sled", "classes": 1}]})

    labels: list[LabelWordOut] = Field(description="Words starting with the prefix, then those with a later word so")


class LibraryLabelOut(BaseModel):
    label: str = Field(description="ImageNet class name (synonyms separated by commas)")
    class_index: int = Field(ge=0, description="ImageNet-1k class index, 0..999")
    images: int = Field(ge=1, description="Stored images (not in the trash) with it among their top predictions")


class LibraryLabelList(BaseModel):
    labels: list[LibraryLabelOut] = Field(description="The classes the library's images have, the most frequent first")


class TrashList(BaseModel):
    total: int = Field(description="Number of images in the trash")
    offset: int = Field(description="Images skipped before this page")
    limit: int = Field(description="Largest page size asked for")
    items: list[ImageOut] = Field(description="This page, the most recently trashed first")


class EmptyTrashOut(BaseModel):
    purged: int = Field(description="How many images were deleted for good")


class LimitsOut(BaseModel):
    max_upload_bytes: int = Field(description="Largest request body")
    max_files_per_request: int = Field(description="Most files in one upload")
    max_image_pixels: int = Field(description="Largest image, in pixels (refused before decoding)")


class StatsOut(BaseModel):
    count: int = Field(description="Number of stored images (not counting the trash)")
    model: str = Field(description="Model name")
    embedding: str = Field(description="Embedding definition")
    dim: int = Field(description="Vector length")
    metric: str = Field(description="The default metric")
    index_type: str = Field(description="'flat' (exact) or 'hnsw' (approximate)")
    device: str = Field(description="Where inference runs, e.g. 'cpu' or 'cuda:0'")
    precision: str = Field(description="Inference precision, e.g. 'float32' or 'bfloat16'")
    engine: str = Field(description="Inference engine: 'openvino', 'onnxruntime' or 'torch'")
    trashed: int = Field(default=0, description="Images in the trash (not counted in `count`)")
    trash_retention_days: int = Field(
        default=0, description="Images in the trash longer than this are deleted for good at start; 0 = never"
    )
    limits: LimitsOut = Field(description="Request limits")
    access: Literal["keys", "open"] = Field(
        description="'keys': every request needs an API key; 'open': no IMGSIM_API_KEYS, anyone who can reach "
        "the server may read, add and delete images"
    )

    @classmethod
    def of(cls, stats: IndexStats, limits: LimitsOut, access: Literal["keys", "open"]) -> StatsOut:
        return cls.model_validate({**asdict(stats), "limits": limits, "access": access})


class HealthOut(BaseModel):
    status: Literal["ok"] = Field(default="ok", description="Always 'ok' while the process answers")


class ReadyOut(BaseModel):
    status: Literal["ready", "starting", "failed"] = Field(description="'ready' once requests will be served")
    model: str | None = Field(default=None, description="Model and embedding definition, once loaded")
    detail: str | None = Field(default=None, description="Why the service could not start")


class DuplicateImageOut(ImageOut):
    similarity: float = Field(ge=-1, le=1, description="Duplicate similarity to the kept image (1 for itself)")
    evidence: EvidenceOut | None = Field(
        default=None, description="The verification against the kept image (null for the kept image, or unverified)"
    )

    @classmethod
    def of_member(cls, member: DuplicateMember) -> DuplicateImageOut:
        return cls.model_validate(
            {
                **ImageOut.of(member.image).model_dump(),
                "similarity": member.similarity,
                "evidence": EvidenceOut.of(member.evidence),
            }
        )


DuplicateLevel = Literal["exact", "near", "similar"]


class DuplicateGroupOut(BaseModel):
    keep: int = Field(
        description="Id of the image to keep: the largest resolution, then the larger file, then the richer EXIF "
        "(date taken, GPS), then the oldest"
    )
    level: DuplicateLevel | None = Field(
        description="The level the group was found at (null: a threshold of one's own)"
    )
    copies: bool = Field(
        description="Every member is a proven copy of the kept image (exact and near): removing them loses no picture"
    )
    reason: str = Field(description="Why these images are a group, in words")
    images: list[DuplicateImageOut] = Field(description="The kept image first, then by similarity to it")

    @classmethod
    def of(cls, group: DuplicateGroup) -> DuplicateGroupOut:
        return cls(
            keep=group.keep,
            level=group.level,
            copies=group_is_copies(group),
            reason=group_reason(group),
            images=[DuplicateImageOut.of_member(m) for m in group.members],
        )


class DuplicatesResponse(BaseModel):
    total: int = Field(description="Number of groups")
    level: DuplicateLevel | None = Field(description="The level asked for (null when a threshold was given)")
    meaning: str = Field(description="What the level means")
    threshold: float = Field(description="The duplicate similarity every candidate pair reached")
    offset: int = Field(description="Groups skipped (pagination)")
    limit: int = Field(description="Most groups returned")
    groups: list[DuplicateGroupOut] = Field(description="Largest groups first")


class ImageDuplicatesResponse(BaseModel):
    id: int = Field(description="The stored image asked about")
    level: DuplicateLevel | None = Field(description="The level asked for (null when a threshold was given)")
    threshold: float = Field(description="The duplicate similarity every candidate pair reached")
    images: list[DuplicateImageOut] = Field(description="Its duplicates, most similar first; itself left out")


MAX_ID = 2**63 - 1
ImageIdField = Annotated[int, Field(ge=1, le=MAX_ID)]


class ResolveRequest(BaseModel):
    model_config = examples({"keep": 12, "remove": [13, 14]})

    keep: ImageIdField = Field(description="The image to keep")
    remove: list[ImageIdField] = Field(
        min_length=1, max_length=1000, description="Its copies, moved to the trash; their names go to `keep`"
    )


class ResolveOut(BaseModel):
    kept: ImageOut = Field(description="The kept image, with the copies' files in `replaced`")
    trashed: list[ImageOut] = Field(description="The copies now in the trash (restore with POST /trash/{id}/restore)")


MAX_AMONG_IDS = 100_000  # a large folder's images, as many as POST /rank scores


class DuplicatesAmongRequest(BaseModel):
    model_config = examples({"ids": [12, 13, 14, 15], "level": "near"})

    ids: list[ImageIdField] = Field(
        min_length=1, max_length=MAX_AMONG_IDS, description="The stored images to group (a folder's, say)"
    )
    level: DuplicateLevel | None = Field(
        default=None, description="What counts as a duplicate, as for GET /duplicates (default near)"
    )
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="A duplicate similarity of one's own instead of a level"
    )
    min_size: int = Field(default=2, ge=2, le=1_000_000, description="Smallest group size (copies)")
    offset: int = Field(default=0, ge=0, le=2**62, description="Groups to skip (pagination)")
    limit: int = Field(default=50, ge=1, le=1000, description="Most groups to return")


class DismissRequest(BaseModel):
    model_config = examples({"ids": [12, 13]})

    ids: list[ImageIdField] = Field(
        min_length=2, max_length=1000, description="Stored images that are not duplicates of each other (distinct)"
    )


class DismissalOut(BaseModel):
    id: int = Field(description="The decision's id (for undoing it)")
    created_at: datetime = Field(description="When it was made (UTC)")
    sha256s: list[str] = Field(
        description="Every image of the decision by content: it holds for the same bytes stored again"
    )
    images: list[ImageOut] = Field(description="Those images as stored now (one deleted for good is left out)")

    @classmethod
    def of(cls, decision: Decision) -> DismissalOut:
        return cls(
            id=decision.id,
            created_at=decision.created_at,
            sha256s=decision.sha256s,
            images=[ImageOut.of(i) for i in decision.images],
        )


class DismissalList(BaseModel):
    total: int = Field(description="Number of decisions")
    offset: int = Field(description="Decisions skipped before this page")
    limit: int = Field(description="Largest page size asked for")
    items: list[DismissalOut] = Field(description="This page, the newest first")
