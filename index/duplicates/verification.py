"""Verification: evidence that two images come from one capture, not only that they look alike.

A global CNN descriptor is built to be invariant to viewpoint, so no threshold on it tells "another photo of
this" from "a copy of this photo". A candidate pair is therefore checked on its pixels:

1. Local features (ORB, on greyscale images with the longer side at `SIDE` px) are matched between the two
   images, the second also mirrored, and a similarity transform (scale, rotation, translation) is fitted with
   RANSAC: every edit a copy goes through (resize, crop, small rotation, mirror, border, a screenshot of it)
   keeps such a transform exact. When too few features match (flat images, heavy blur), or the transform
   found does not hold (a resize whose rounding changed the aspect a little), the plain and the mirrored
   framing are tried as they are, if the two layouts agree at 32 px (`MIN_FRAMING_CORRELATION`).
2. One image is warped onto the other and both are compared at the finest scale the blurrier of the two
   still holds (a copy shrunk to 64 px is compared at about 64 px). After local contrast normalisation
   (brightness, contrast, colour and greyscale changes do not count), a dense optical flow (DIS) measures how
   far each textured point of one image lies from its place in the other. In a copy it lies where the
   transform puts it: the flow is a fraction of a pixel everywhere but where an overlay covers the picture. A
   separate capture, even of a flat object from almost the same place, has perspective, parallax and lens
   differences that the similarity transform cannot absorb: its flow is pixels, not fractions of one.
3. The matched points must also spread over the overlap (their convex hull a share of it), and the overlap
   must cover most of the smaller image, so that a shared caption or logo over two different photos (even one
   at the top of one and at the bottom of the other, which a shift lays over each other alone) is not taken
   for a copy.

Both directions are tried (A onto B and B onto A); either passing is a copy. `tests/benchmarks/duplicates_eval.py`
measures this on distinct photos, separate captures of one object and edited copies, and the thresholds below
come from it.

Identical pixels (`pixels_identical`) is the `exact` level's evidence: the two decode, after EXIF orientation,
to the same pixels (a copy whose metadata alone differs).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from index.errors import ImageDecodeError
from index.model.imaging import DEFAULT_BUDGET, DecodeBudget, decode_memory, decode_upright, open_image

DEFAULT_MAX_PIXELS = 200_000_000  # the images verified are stored ones: they passed the service's own limit
# Changed whenever the evidence or its thresholds change: stored verdicts of another version are redone.
VERSION = "orb-flow-4"

SIDE = 320  # longer side of the compared images, px
FEATURES = 1000  # ORB keypoints per image (and as many again mirrored)
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 3.0
MIN_INLIERS = 8
# Calibrated (tests/benchmarks/duplicates_eval.py): the 75th percentile of the residual flow over the textured
# overlap, in pixels at the compared scale, and the share of the overlap the matched points span.
MAX_FLOW_PX = 0.30
MIN_SPREAD = 0.10
# A copy lies over most of the other image (a crop inside its original, a photo inside its screenshot): two
# photos that share only a strip (a caption band at the top of one, at the bottom of the other) are not copies.
MIN_OVERLAP = 0.5
MIN_TEXTURED_PX = 300  # textured overlap needed at the full scale (fewer: no evidence either way)
# The effective resolution of an image: the largest downscale factor it survives almost unchanged.
_DETAIL_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
_DETAIL_TOLERANCE = 0.05


@dataclass(frozen=True)
class Evidence:
    """What the pixels of two images say about them."""

    copy: bool  # one is derived from the other (or both from one capture)
    kind: str  # "identical bytes", "identical pixels", "aligned", "framing" or "none"
    inliers: int = 0  # matched points that the transform explains
    flow_px: float | None = None  # residual flow (75th percentile) at the compared scale
    spread: float | None = None  # share of the overlap the matched points span
    scale: float | None = None  # size of the first image over the second's
    rotation: float | None = None  # degrees
    mirrored: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"copy": self.copy, "kind": self.kind}
        if self.kind in ("aligned", "framing", "none") and self.inliers:
            out["inliers"] = self.inliers
        for name in ("flow_px", "spread", "scale", "rotation"):
            value = getattr(self, name)
            if value is not None:
                out[name] = round(float(value), 4)
        if self.mirrored:
            out["mirrored"] = True
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Evidence:
        return cls(
            copy=bool(raw["copy"]),
            kind=str(raw["kind"]),
            inliers=int(raw.get("inliers", 0)),
            flow_px=raw.get("flow_px"),
            spread=raw.get("spread"),
            scale=raw.get("scale"),
            rotation=raw.get("rotation"),
            mirrored=bool(raw.get("mirrored", False)),
        )


NO_EVIDENCE = Evidence(copy=False, kind="none")


@dataclass
class Prepared:
    """One image made ready for verification: its greyscale at `SIDE` px, plain and mirrored, with features."""

    grey: NDArray[np.uint8]
    mirrored: NDArray[np.uint8]
    points: NDArray[np.float32]
    descriptors: NDArray[np.uint8] | None
    mirrored_points: NDArray[np.float32]
    mirrored_descriptors: NDArray[np.uint8] | None
    detail: float  # effective blur: 1 for a sharp image, 4 for one blown up four times
    nbytes: int = field(default=0)


def _cv2() -> Any:
    import cv2

    return cv2


def decode_grey(
    data: bytes, max_pixels: int, budget: DecodeBudget | None = None, side: int = SIDE
) -> NDArray[np.uint8]:
    """The image upright (EXIF), in greyscale, shrunk so its longer side is at most `side`: decoded as every
    image is (`decode_upright`: the pixel limit, the decode budget and deadline), a JPEG at a reduced scale.

    Raises:
        ImgsimError: see `decode_upright`.
    """

    def shrink(img: Image.Image) -> NDArray[np.uint8]:
        grey = img.convert("L")
        w, h = grey.size
        scale = side / max(w, h)
        if scale < 1:
            grey = grey.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
        return np.ascontiguousarray(np.asarray(grey, dtype=np.uint8))

    return decode_upright(data, max_pixels, shrink, draft_size=side, budget=budget)[2]


def effective_detail(grey: NDArray[np.uint8]) -> float:
    """The largest factor the image can be shrunk by and blown up again almost unchanged (1 for a sharp one)."""
    cv2 = _cv2()
    g = grey.astype(np.float32)
    h, w = g.shape
    spread = float(g.std()) + 1e-6
    best = 1.0
    for factor in _DETAIL_FACTORS:
        small = cv2.resize(g, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
        back = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if math.sqrt(float(np.mean((back - g) ** 2))) / spread >= _DETAIL_TOLERANCE:
            break
        best = factor
    return best


def _compression_detail(data: bytes, grey: NDArray[np.uint8]) -> float:
    """How coarse a heavily compressed JPEG's blocks are at the compared size, as a detail factor: quantisation
    noise at the 8 px block scale is not detail the other image can be expected to share."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            tables = getattr(img, "quantization", None)
            width = img.width
    except (OSError, ValueError):
        return 1.0
    if not tables:
        return 1.0
    luma = np.asarray(tables.get(0, next(iter(tables.values()))), np.float64)
    # The standard table at quality 50 averages 57; quality 15 about 190, quality 90 about 11.
    coarse = float(luma.mean()) / _JPEG_COARSE_MEAN
    if coarse <= 1.0:
        return 1.0
    shrink = grey.shape[1] / max(width, 1)  # blocks shrink with the image
    return max(1.0, min(2.0, coarse * 8.0 * shrink / 4.0))


_JPEG_COARSE_MEAN = 60.0


def prepare(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, budget: DecodeBudget | None = None) -> Prepared:
    """Decode and describe one image for `verify` (about 10 ms for a photo on one core).

    Raises:
        ImgsimError: the bytes do not decode, or not now (see `decode_upright`).
    """
    grey = decode_grey(data, max_pixels, budget)
    mirrored = np.ascontiguousarray(grey[:, ::-1])
    detector = _detector()
    kp, des = detector.detectAndCompute(grey, None)
    kpm, desm = detector.detectAndCompute(mirrored, None)
    points = np.array([k.pt for k in kp], np.float32).reshape(-1, 2)
    mpoints = np.array([k.pt for k in kpm], np.float32).reshape(-1, 2)
    detail = max(effective_detail(grey), _compression_detail(data, grey))
    prepared = Prepared(grey, mirrored, points, des, mpoints, desm, detail)
    prepared.nbytes = 2 * grey.nbytes + sum(0 if d is None else d.nbytes for d in (des, desm))
    return prepared


def _detector() -> Any:
    # ORB: binary features, rotation invariant, over an 8-level pyramid. SIFT aligned no better on the calibration
    # pairs (the flow measures the fit's residual anyway) and cost 15 times as much to describe an image.
    cv2 = _cv2()
    return cv2.ORB_create(
        nfeatures=FEATURES, scaleFactor=1.2, nlevels=8, edgeThreshold=15, patchSize=15, fastThreshold=10
    )


def _match(
    a: Prepared, points: NDArray[np.float32], descriptors: NDArray[np.uint8] | None
) -> tuple[NDArray[np.float32], NDArray[np.float32]] | None:
    cv2 = _cv2()
    if a.descriptors is None or descriptors is None or len(a.descriptors) < 2 or len(descriptors) < 2:
        return None
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, descriptors, k=2)
    good = [m for m, n in (pair for pair in knn if len(pair) == 2) if m.distance < RATIO * n.distance]
    if len(good) < MIN_INLIERS:
        return None
    return a.points[[g.queryIdx for g in good]], points[[g.trainIdx for g in good]]


@dataclass(frozen=True)
class _Alignment:
    transform: NDArray[np.float64]  # 2x3: second image's (mirrored when `mirrored`) pixels -> first's
    inliers: int
    first_points: NDArray[np.float32]  # the inliers in the first image
    second_points: NDArray[np.float32]  # and in the second
    mirrored: bool


def _align(a: Prepared, b: Prepared) -> _Alignment | None:
    """The similarity transform that maps most matched features of b (or of b mirrored) onto a's."""
    cv2 = _cv2()
    best: _Alignment | None = None
    for mirrored in (False, True):
        found = _match(a, *((b.mirrored_points, b.mirrored_descriptors) if mirrored else (b.points, b.descriptors)))
        if found is None:
            continue
        pa, pb = found
        m, mask = cv2.estimateAffinePartial2D(
            pb, pa, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=2000, confidence=0.995
        )
        if m is None:
            continue
        keep = mask.ravel().astype(bool)
        if keep.sum() < MIN_INLIERS or (best is not None and keep.sum() <= best.inliers):
            continue
        refined, _ = cv2.estimateAffinePartial2D(pb[keep], pa[keep], method=cv2.LMEDS)
        transform = refined if refined is not None else m
        if not _plausible(transform):
            continue
        best = _Alignment(transform, int(keep.sum()), pa[keep], pb[keep], mirrored)
    return best


# The geometry an edit gives a copy: a screenshot shrinks it, a crop enlarges it, a few times at most (copies
# measured: 0.26 to 3.6), and it is rotated a little (copies: at most 27 degrees, a mirrored copy rotated 15 one
# way against another rotated 12 the other). A fit far outside (a whole photo onto a few pixels of another, or
# turned half over) is a handful of chance matches, not a copy.
MIN_SCALE, MAX_SCALE = 0.2, 5.0
MAX_ROTATION = 45.0  # degrees


def _plausible(transform: NDArray[np.float64]) -> bool:
    scale = math.hypot(transform[0, 0], transform[1, 0])
    rotation = math.degrees(math.atan2(transform[1, 0], transform[0, 0]))
    return MIN_SCALE <= scale <= MAX_SCALE and abs(rotation) <= MAX_ROTATION


def _normalised(x: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Local contrast normalisation: brightness, contrast, colour and tone curves no longer count."""
    cv2 = _cv2()
    x = cv2.GaussianBlur(x, (0, 0), 0.8)
    mean = cv2.GaussianBlur(x, (0, 0), 4.0)
    sd = np.sqrt(np.maximum(cv2.GaussianBlur((x - mean) ** 2, (0, 0), 4.0), 0)) + 16.0
    return np.clip((x - mean) / sd * 48 + 128, 0, 255).astype(np.uint8)


def _residual_flow(
    target: NDArray[np.uint8], warped: NDArray[np.uint8], valid: NDArray[np.bool_], factor: float
) -> float | None:
    """The 75th percentile of the optical flow between `target` and `warped` over their textured overlap, in
    pixels at `1 / factor` of their size; None when too little of the overlap is textured."""
    cv2 = _cv2()
    t = target.astype(np.float32)
    w = np.where(valid, warped, target).astype(np.float32)
    nt, nw = _normalised(t), _normalised(w)
    h, width = target.shape
    if min(h, width) < _MIN_FLOW_SIDE:
        return None  # too small to tell anything (and below what the flow accepts)
    if factor > 1.2:
        size = (max(_MIN_FLOW_SIDE, round(width / factor)), max(_MIN_FLOW_SIDE, round(h / factor)))
        nt = cv2.resize(nt, size, interpolation=cv2.INTER_AREA)
        nw = cv2.resize(nw, size, interpolation=cv2.INTER_AREA)
        t = cv2.resize(t, size, interpolation=cv2.INTER_AREA)
        valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    else:
        factor = 1.0
    erode = max(3, int(15 / factor) | 1)
    inside = cv2.erode(valid.astype(np.uint8), np.ones((erode, erode), np.uint8)).astype(bool)
    window = (max(3, int(9 / factor) | 1),) * 2
    variance = cv2.blur(t * t, window) - cv2.blur(t, window) ** 2
    textured = inside & (variance > 25.0)
    if textured.sum() < max(40.0, MIN_TEXTURED_PX / factor**2):
        return None
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(nt, nw, None)
    # Where the flow finds no match (an overlay, a block, text over the picture), its vectors are noise: such
    # regions are left out, as long as most of the picture matches.
    matched = textured & _matched(nt, nw, flow)
    if matched.sum() < MIN_MATCHED * textured.sum():
        return None
    ys, xs = np.nonzero(matched)
    if len(xs) > _FLOW_SAMPLES:  # an even subsample keeps the fit cheap
        pick = np.linspace(0, len(xs) - 1, _FLOW_SAMPLES).astype(np.int64)
        ys, xs = ys[pick], xs[pick]
    return float(np.percentile(_off_similarity(xs, ys, flow[ys, xs]), 75))


_FLOW_SAMPLES = 6000
_MIN_FLOW_SIDE = 12  # DIS needs 12 px
MIN_MATCHED = 0.6  # share of the textured overlap that must find itself in the other image
_MATCH_LEVELS = 24.0  # normalised grey levels (half a local standard deviation)


def _matched(target: NDArray[np.uint8], source: NDArray[np.uint8], flow: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Pixels of `target` that `source`, moved by `flow`, matches: the local residual is under half a local
    standard deviation."""
    cv2 = _cv2()
    h, w = target.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    moved = cv2.remap(source, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR)
    residual = cv2.GaussianBlur(np.abs(target.astype(np.float32) - moved.astype(np.float32)), (0, 0), 2.0)
    return np.asarray(residual < _MATCH_LEVELS)


def _off_similarity(xs: NDArray[np.int64], ys: NDArray[np.int64], flow: NDArray[np.float32]) -> NDArray[np.float64]:
    """How far each point's flow is from the similarity transform that best explains the whole flow field.

    The transform fitted from matched features is off by a fraction of a degree or of a percent, which at the
    image's edges is a pixel: that part of the flow is the fit's, not the pair's, and is taken out.
    """
    x, y = xs.astype(np.float64), ys.astype(np.float64)
    qx, qy = x + flow[:, 0], y + flow[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    design = np.concatenate([np.stack([x, -y, ones, zeros], 1), np.stack([y, x, zeros, ones], 1)])
    target = np.concatenate([qx, qy])
    used = np.ones(len(x), bool)
    for _ in range(3):  # trimmed least squares: an overlay's flow is noise, not a transform
        rows = np.concatenate([used, used])
        (a, b, tx, ty), *_ = np.linalg.lstsq(design[rows], target[rows], rcond=None)
        residual = np.hypot(qx - (a * x - b * y + tx), qy - (b * x + a * y + ty))
        used = residual <= np.percentile(residual, 60)
    return residual


def _check(
    target: Prepared,
    source_grey: NDArray[np.uint8],
    source_detail: float,
    transform: NDArray[np.float64],
    target_points: NDArray[np.float32] | None,
) -> tuple[bool, float | None, float | None]:
    """Warp `source_grey` onto `target` by `transform` and compare: (copy, flow, spread)."""
    cv2 = _cv2()
    h, w = target.grey.shape
    warped = cv2.warpAffine(source_grey, transform, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    valid = cv2.warpAffine(np.full(source_grey.shape, 255, np.uint8), transform, (w, h), flags=cv2.INTER_NEAREST) > 0
    overlap = int(valid.sum())
    scale = math.hypot(transform[0, 0], transform[1, 0])
    smaller = min(h * w, source_grey.size * scale * scale)
    if overlap < MIN_TEXTURED_PX or overlap < MIN_OVERLAP * smaller:
        return False, None, None
    spread = None
    if target_points is not None:
        spread = float(cv2.contourArea(cv2.convexHull(target_points)) / overlap)
        if spread < MIN_SPREAD:
            return False, None, spread
    factor = max(target.detail, source_detail * scale, 1.0)
    flow = _residual_flow(target.grey, warped, valid, factor)
    return flow is not None and flow <= MAX_FLOW_PX, flow, spread


def _invert(transform: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(_cv2().invertAffineTransform(transform), np.float64)


def verify(a: Prepared, b: Prepared) -> Evidence:
    """Whether `a` and `b` come from one capture (see the module docstring), with the evidence."""
    found = _align(a, b)
    if found is not None:
        m = found.transform
        scale, rotation = math.hypot(m[0, 0], m[1, 0]), math.degrees(math.atan2(m[1, 0], m[0, 0]))
        source = b.mirrored if found.mirrored else b.grey
        best: tuple[bool, float | None, float | None] = (False, None, None)
        # b onto a, then a onto b: the finer image as the target finds what the other hides.
        for target, grey, detail, transform, points in (
            (a, source, b.detail, m, found.first_points),
            (
                _as_target(b, found.mirrored),
                a.grey,
                a.detail,
                _invert(m),
                found.second_points,
            ),
        ):
            result = _check(target, grey, detail, transform, points)
            if result[0]:
                best = result
                break
            if result[1] is not None and (best[1] is None or result[1] < best[1]):
                best = result
        copy, flow, spread = best
        if not copy:
            # Resized to a slightly other aspect (rounding), which a similarity cannot model: the same framing.
            framed, framed_flow = _same_framing(a, b, found.mirrored)
            if framed:
                return Evidence(True, "framing", found.inliers, framed_flow, mirrored=found.mirrored)
        return Evidence(
            copy, "aligned" if copy else "none", found.inliers, flow, spread, scale, rotation, found.mirrored
        )
    # Too few features to align: the same framing (resized, recompressed, recoloured), plain or mirrored.
    for mirrored in (False, True):
        copy, flow = _same_framing(a, b, mirrored)
        if copy:
            return Evidence(True, "framing", flow_px=flow, mirrored=mirrored)
    return NO_EVIDENCE


def _as_target(p: Prepared, mirrored: bool) -> Prepared:
    if not mirrored:
        return p
    return Prepared(p.mirrored, p.grey, p.mirrored_points, p.mirrored_descriptors, p.points, p.descriptors, p.detail)


def _same_framing(a: Prepared, b: Prepared, mirrored: bool) -> tuple[bool, float | None]:
    cv2 = _cv2()
    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    if abs(wa / ha - wb / hb) > 0.02 * wa / ha:
        return False, None
    source = b.mirrored if mirrored else b.grey
    if _layout_correlation(a.grey, source) < MIN_FRAMING_CORRELATION:
        return False, None  # not even the same layout at 32 px: no need for the flow
    scale = wa / wb
    resized = cv2.resize(source, (wa, ha), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    flow = _residual_flow(a.grey, resized, np.ones_like(a.grey, bool), max(a.detail, b.detail * scale, 1.0))
    return flow is not None and flow <= MAX_FLOW_PX, flow


MIN_FRAMING_CORRELATION = 0.9


def _layout_correlation(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    """The correlation of the two images' layouts at 32 x 32 px (local contrast normalised)."""
    cv2 = _cv2()
    small = [
        _normalised(cv2.resize(x, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)).astype(np.float32)
        for x in (a, b)
    ]
    x, y = (m - m.mean() for m in small)
    return float((x * y).sum() / max(float(np.sqrt((x * x).sum() * (y * y).sum())), 1e-6))


def decoded_pixels(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, budget: DecodeBudget | None = None
) -> tuple[tuple[int, int], str, bytes]:
    """(size, mode, pixels) of the image as shown: decoded in full (in its own mode: 16 bits stay 16 bits),
    upright per EXIF orientation, within the decode budget.

    Raises:
        ImgsimError: see `open_image`; DecodeBudgetExceeded, DecodeBusy.
    """
    img = open_image(data, max_pixels)
    with (budget or DEFAULT_BUDGET).reserve(2 * decode_memory(img, data), f"{img.width}x{img.height} {img.format}"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                upright: Image.Image = ImageOps.exif_transpose(img) or img
                if upright.mode not in ("1", "L", "RGB", "RGBA", "I;16", "I", "F"):
                    upright = upright.convert("RGBA" if "A" in upright.mode or upright.mode == "P" else "RGB")
                return upright.size, upright.mode, upright.tobytes()
        except (OSError, ValueError, SyntaxError, RuntimeError) as exc:  # RuntimeError: libheif
            raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc


def pixels_identical(
    a: bytes, b: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, budget: DecodeBudget | None = None
) -> bool:
    """Whether the two decode to the same pixels after EXIF orientation (only metadata or encoding differ).

    Raises:
        ImgsimError: either does not decode, or not now.
    """
    if a == b:
        return True
    size_a, mode_a, pixels_a = decoded_pixels(a, max_pixels, budget)
    size_b, mode_b, pixels_b = decoded_pixels(b, max_pixels, budget)
    if size_a != size_b:
        return False
    if mode_a != mode_b:
        # One file stored greyscale or with an opaque alpha channel, the other as RGB: compare as RGBA.
        return _as_rgba(size_a, mode_a, pixels_a) == _as_rgba(size_b, mode_b, pixels_b)
    return pixels_a == pixels_b


def _as_rgba(size: tuple[int, int], mode: str, pixels: bytes) -> bytes:
    return Image.frombytes(mode, size, pixels).convert("RGBA").tobytes()


def nearly_equal(a: Prepared, b: Prepared) -> bool:
    """A cheap test before a full decode: identical pictures give the same small greyscale, up to rounding."""
    if a.grey.shape != b.grey.shape:
        return False
    return float(np.mean(np.abs(a.grey.astype(np.int16) - b.grey.astype(np.int16)))) <= 2.0
