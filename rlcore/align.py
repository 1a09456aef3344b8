"""Where an editor's "after" sits in the "before": crop, straightening, export size, or not the same photo.

An editor's after is often cropped, straightened by a degree or two and exported smaller than the
original, and now and then paired with the wrong photo. The reward compares the two pixel by pixel, so
before any pixel is compared the after's frame has to be found in the before, and a pair whose after
is not the same photo has to be refused rather than trained on.

``align(before, after)`` estimates the similarity transform (scale, rotation, translation) that maps the
after's pixels into the before, or raises ``NotAligned`` with a reason a person can act on:

1. both photos are reduced to grey at a working size and normalised (CLAHE), so that the edit itself
   (exposure, white balance, contrast, saturation) barely changes what the matcher sees;
2. ORB features (then AKAZE, for the tiny or heavily compressed exports ORB finds too little in),
   Lowe's ratio test, then RANSAC on a 4-degree-of-freedom similarity (``cv2.estimateAffinePartial2D``),
   refined on its inliers;
3. the estimate is checked: the before, warped into the after's frame, must agree with the after in
   structure (the cosine between their gradient fields, which a change of colour or tone keeps and a
   different photo does not), and then be a plausible editor's crop: turned by at most
   ``MAX_ROTATION_DEG``, inside the before, at least ``MIN_AREA`` of it;
4. photos too small or too plain for features (tests' tiny images, a foggy sky) fall back to the
   identity (the after is the whole before, resized) when the aspect ratios match and the structure
   check passes at identity;
5. a pair that fails is tried once more with the after mirrored, only to say so in the refusal.

An after within ``IDENTITY_TOLERANCE`` of the whole before is taken as the whole before: its thumbnails
are then exactly what they were before alignment existed, not a warp blurred by an estimate's noise.

Coordinates: an image W x H spans the continuous rectangle [0, W] x [0, H] (pixel centres at i + 0.5).
``Alignment.matrix`` maps after coordinates to before coordinates, both at the photos' full sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Alignment", "NotAligned", "align", "warp_before", "identity"]

MIN_AREA = 0.25  # the smallest crop accepted, as a fraction of the before's area
# Straightening; beyond this the pair is more likely a sideways export (or a wrong EXIF orientation).
MAX_ROTATION_DEG = 20.0
MIN_STRUCTURE = 0.4  # agreement of the gradient fields of before (warped) and after; see _structure
# Stricter when features could not place the after and only "the whole before, resized" is checked: an
# after cropped by 3 % a side still agrees at 0.5-0.7, the whole photo (edited, re-encoded) at 0.83 and up.
MIN_STRUCTURE_UNPLACED = 0.75
MAX_OUTSIDE = 0.03  # fraction of the after's frame allowed to fall outside the before (rounding, borders)
IDENTITY_TOLERANCE = 0.005  # corners this close (fraction of the before's long side) snap to identity
IDENTITY_PIXELS = 1.5  # ... or this close, in the before's pixels


class NotAligned(ValueError):
    """The after cannot be placed in the before; ``reason`` says why, ``side`` which photo is at fault."""

    def __init__(self, reason: str, side: str = "after"):
        super().__init__(reason)
        self.reason = reason
        self.side = side


@dataclass(frozen=True)
class Alignment:
    """A similarity transform from the after's pixels to the before's, at the photos' full sizes."""

    matrix: tuple[tuple[float, float, float], tuple[float, float, float]]
    before_size: tuple[int, int]  # (width, height)
    after_size: tuple[int, int]
    structure: float = 1.0  # gradient agreement measured when aligning (see _structure; 1.0: not measured)

    @property
    def m(self) -> np.ndarray:
        return np.array(self.matrix, dtype=np.float64)

    @property
    def zoom(self) -> float:
        """Before pixels per after pixel."""
        a, b = self.matrix[0][0], self.matrix[1][0]
        return math.hypot(a, b)

    @property
    def scale(self) -> float:
        """After pixels per before pixel: 0.5 for an export at half the original's resolution."""
        return 1.0 / self.zoom

    @property
    def rotation_deg(self) -> float:
        """The angle the after's frame is turned within the before, clockwise on screen (y points down)."""
        return math.degrees(math.atan2(self.matrix[1][0], self.matrix[0][0]))

    @property
    def crop(self) -> tuple[float, float, float, float]:
        """(x, y, w, h) in before pixels: the after's frame before it is turned by ``rotation_deg`` about
        its centre, the way an editing program describes a straightened crop."""
        aw, ah = self.after_size
        cx, cy = self.m @ np.array([aw / 2, ah / 2, 1.0])
        w, h = aw * self.zoom, ah * self.zoom
        return (cx - w / 2, cy - h / 2, w, h)

    @property
    def area_fraction(self) -> float:
        """The after's frame as a fraction of the before's area (1.0: not cropped)."""
        _, _, w, h = self.crop
        return w * h / (self.before_size[0] * self.before_size[1])

    @property
    def is_identity(self) -> bool:
        """The after is the whole before, resized (possibly stretched by a rounding of its size)."""
        bw, bh = self.before_size
        aw, ah = self.after_size
        return np.allclose(self.m, [[bw / aw, 0, 0], [0, bh / ah, 0]], rtol=1e-7, atol=1e-7)

    def corners(self) -> np.ndarray:
        """The after's four corners in before coordinates, (4, 2): top-left, top-right, bottom-right,
        bottom-left."""
        aw, ah = self.after_size
        pts = np.array([[0, 0, 1], [aw, 0, 1], [aw, ah, 1], [0, ah, 1]], dtype=np.float64)
        return pts @ self.m.T

    def describe(self) -> str:
        """'identity', or e.g. 'cropped 18 %, rotated 1.2°' (personalize's client words it the same)."""
        if self.is_identity:
            return "identity"
        parts = []
        if self.area_fraction <= 0.995:
            parts.append(f"cropped {(1 - self.area_fraction) * 100:.0f} %")
        if abs(self.rotation_deg) >= 0.05:
            parts.append(f"rotated {self.rotation_deg:.1f}°")
        return ", ".join(parts) or "shifted"

    def to_json(self) -> dict:
        """What is stored with a pair and shown in the API (``matrix`` keeps the exact transform)."""
        x, y, w, h = self.crop
        return {
            "identity": self.is_identity,
            "scale": round(self.scale, 6),
            "rotation_deg": round(self.rotation_deg, 3),
            "crop": [round(x), round(y), round(w), round(h)],
            "structure": round(self.structure, 3),
            "matrix": [[round(v, 9) for v in row] for row in self.matrix],
        }

    @classmethod
    def from_json(cls, data: dict | None, before_size, after_size) -> Alignment:
        """The stored form back; an empty or missing one (pairs stored before alignment) is the identity."""
        if not data or "matrix" not in data:
            return identity(before_size, after_size)
        matrix = tuple(tuple(float(v) for v in row) for row in data["matrix"])
        return cls(matrix, tuple(before_size), tuple(after_size), float(data.get("structure", 1.0)))

    def resized(self, before_size, after_size) -> Alignment:
        """The same transform for the same photos at other sizes (e.g. decoded smaller than the files)."""
        sb = np.diag([before_size[0] / self.before_size[0], before_size[1] / self.before_size[1], 1.0])
        sa = np.diag([self.after_size[0] / after_size[0], self.after_size[1] / after_size[1], 1.0])
        full = np.vstack([self.m, [0, 0, 1]])
        m = (sb @ full @ sa)[:2]
        return Alignment(_tuple(m), tuple(before_size), tuple(after_size), self.structure)


def _tuple(m: np.ndarray):
    return tuple(tuple(float(v) for v in row) for row in np.asarray(m)[:2])


def identity(before_size, after_size) -> Alignment:
    """The after is the whole before, resized to the after's size."""
    bw, bh = before_size
    aw, ah = after_size
    return Alignment(((bw / aw, 0.0, 0.0), (0.0, bh / ah, 0.0)), tuple(before_size), tuple(after_size))


# --- estimation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Detector:
    name: str
    side: int  # long side of the working images (a small photo is enlarged at most twice)

    def create(self):
        # A detector per call (creating one costs microseconds): OpenCV objects are not safe to share
        # between the threads of a threaded web server.
        if self.name == "ORB":
            # fastThreshold low: a flat, dark or low-contrast photo still gets corners; ORB keeps the
            # strongest nfeatures anyway.
            return cv2.ORB_create(nfeatures=2000, scaleFactor=1.2, nlevels=8, fastThreshold=7)
        return cv2.AKAZE_create(threshold=0.0005)


# Tried in order until one places the after. ORB is fast and enough for almost every pair; AKAZE, on
# smaller images, finds the blobs that survive in a tiny or heavily compressed export, where ORB's
# corners do not.
_DETECTORS = (_Detector("ORB", 640), _Detector("AKAZE", 400))
_CHECK_SIDE = 256  # long side of the after's frame for the structure check
_MIN_INLIERS = 12
_RATIO = 0.8  # Lowe's ratio test
_RANSAC_PX = 3.0  # reprojection threshold, in working pixels (~0.5-0.75 % of the long side)
_BLANK_STD = 2.0  # grey levels: below this standard deviation a photo is one flat colour


def _grey(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """Grey uint8 with long side ``side`` (enlarged at most twice) and the factor from the image's pixels
    to it. An after exported at 100 pixels and blown up six times would have no sharp corner left for a
    detector at any level of its pyramid."""
    image = np.asarray(image)
    grey = (
        image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    )
    h, w = grey.shape
    factor = min(side, 2 * max(h, w)) / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(grey, size, interpolation=interpolation), factor


def _normalised(grey: np.ndarray) -> np.ndarray:
    """Levels stretched, then local contrast equalised (CLAHE): what exposure, contrast and tone curves
    change is mostly what this removes, so the detector sees much the same corners before and after the
    edit. The stretch matters for an after pushed nearly black or white, whose whole photo is left in a
    dozen grey levels: CLAHE's clip limit would keep it flat."""
    low, high = np.percentile(grey, (0.5, 99.5))
    if high - low < 64:
        # Smooth first: stretched, a dark JPEG's block noise would be all the detector sees.
        grey = cv2.GaussianBlur(grey, (0, 0), 1.5)
        grey = cv2.convertScaleAbs(
            grey, alpha=255.0 / max(high - low, 1.0), beta=-low * 255.0 / max(high - low, 1.0)
        )
    return cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(grey)


@dataclass
class _Estimate:
    matrix: np.ndarray  # 2x3, after working pixels -> before working pixels
    inliers: int
    matches: int


def _estimate(detector, after_norm: np.ndarray, before_features) -> _Estimate | None:
    """Features of the after matched to the before's, then RANSAC on a similarity transform."""
    kb, db = before_features
    ka, da = detector.detectAndCompute(after_norm, None)
    if db is None or da is None or len(kb) < 2 or len(ka) < 2:
        return None
    good = [
        pair[0]
        for pair in cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
        if len(pair) == 2 and pair[0].distance < _RATIO * pair[1].distance
    ]
    if len(good) < _MIN_INLIERS:
        return _Estimate(np.eye(2, 3), 0, len(good))
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
    # Four degrees of freedom (scale, rotation, translation): what cropping, straightening and resizing do.
    # The inliers' least-squares refinement follows RANSAC (refineIters).
    matrix, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=_RANSAC_PX, maxIters=4000, confidence=0.999
    )
    if matrix is None:
        return _Estimate(np.eye(2, 3), 0, len(good))
    return _Estimate(matrix, int(mask.sum()), len(good))


def _to_full(matrix: np.ndarray, before_factor: float, after_factor: float) -> np.ndarray:
    """A matrix between working images (pixel centres at integers, OpenCV's convention) as one between
    the full images in continuous coordinates."""
    # continuous full after -> working after pixel index: x * fa - 0.5; back: (x + 0.5) / fb.
    to_work = np.array([[after_factor, 0, -0.5], [0, after_factor, -0.5], [0, 0, 1]])
    from_work = np.array(
        [[1 / before_factor, 0, 0.5 / before_factor], [0, 1 / before_factor, 0.5 / before_factor], [0, 0, 1]]
    )
    return (from_work @ np.vstack([matrix, [0, 0, 1]]) @ to_work)[:2]


def _warp_matrix(alignment: Alignment, before_shape, out_size) -> np.ndarray:
    """For cv2.warpAffine with WARP_INVERSE_MAP: output pixel index -> before-array pixel index."""
    bh, bw = before_shape[:2]
    ow, oh = out_size
    aw, ah = alignment.after_size
    out_to_after = np.array([[aw / ow, 0, 0.5 * aw / ow], [0, ah / oh, 0.5 * ah / oh], [0, 0, 1]])
    before_to_array = np.array(
        [[bw / alignment.before_size[0], 0, -0.5], [0, bh / alignment.before_size[1], -0.5], [0, 0, 1]]
    )
    return (before_to_array @ np.vstack([alignment.m, [0, 0, 1]]) @ out_to_after)[:2]


def warp_before(
    before: np.ndarray,
    alignment: Alignment,
    out_size: tuple[int, int] | None = None,
    border=cv2.BORDER_REPLICATE,
) -> np.ndarray:
    """The before's region that the after shows, turned and scaled into the after's frame.

    ``before`` may be the photo at any size (a decoded thumbnail of it, a mask of it): the alignment is
    scaled to it. ``out_size`` (width, height) defaults to the after's frame at the before array's
    resolution, so that nothing is shrunk here by more than the warp's bilinear filter can handle;
    shrink the result with an area filter. The identity is a plain resize.
    """
    before = np.asarray(before)
    bh, bw = before.shape[:2]
    if out_size is None and alignment.is_identity:
        return before.copy()  # the whole before: not resampled at all
    if out_size is None:
        zoom = alignment.zoom * bw / alignment.before_size[0]
        out_size = (
            max(1, round(alignment.after_size[0] * zoom)),
            max(1, round(alignment.after_size[1] * zoom)),
        )
    if alignment.is_identity:
        if (bw, bh) == tuple(out_size):
            return before.copy()
        shrinking = out_size[0] < bw
        return cv2.resize(before, out_size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    matrix = _warp_matrix(alignment, before.shape, out_size)
    return cv2.warpAffine(
        before, matrix, out_size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border
    )


def _gradients(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
    return cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)


def _structure(before_grey: np.ndarray, after_grey: np.ndarray, alignment: Alignment) -> float:
    """How well the after and the before, warped into its frame, agree in structure: the cosine between
    their gradient fields (both gradient vectors at every pixel, as one long vector each).

    An edit's tone curve is increasing, so it scales gradients but keeps their directions: the same photo,
    however edited, scores near 1 (0.85 and up for strong random edits and JPEG quality 70), a
    different photo near 0 (its edges fall elsewhere, in other directions), a misaligned one in between.
    """
    ah, aw = after_grey.shape
    factor = min(1.0, _CHECK_SIDE / max(ah, aw))
    size = (max(8, round(aw * factor)), max(8, round(ah * factor)))
    after = cv2.resize(after_grey, size, interpolation=cv2.INTER_AREA)
    before = warp_before(before_grey, alignment, size)
    margin = max(2, round(0.02 * max(size)))  # borders: the warp's edge and the blur
    inner = (slice(margin, -margin), slice(margin, -margin))
    (ax, ay), (bx, by) = _gradients(after), _gradients(before)
    ax, ay, bx, by = ax[inner], ay[inner], bx[inner], by[inner]
    norms = math.sqrt(float((ax * ax + ay * ay).sum()) * float((bx * bx + by * by).sum()))
    return float((ax * bx + ay * by).sum()) / norms if norms > 0 else 0.0


def _outside_fraction(alignment: Alignment) -> float:
    """The fraction of the after's frame that falls outside the before (0 for any real crop)."""
    bw, bh = alignment.before_size
    corners = alignment.corners().astype(np.float32)
    inside = cv2.intersectConvexConvex(corners, np.float32([[0, 0], [bw, 0], [bw, bh], [0, bh]]))[0]
    frame = abs(cv2.contourArea(corners))
    return max(0.0, 1.0 - inside / frame) if frame > 0 else 1.0


def _check_blank(grey: np.ndarray, side: str) -> None:
    if float(grey.std()) < _BLANK_STD:
        raise NotAligned(f"the {side} is blank (one flat colour): nothing to align or learn from", side)


@dataclass
class _Attempt:
    alignment: Alignment | None = None
    reason: str | None = None  # why not, when the features said something
    verified: bool = False  # the reason comes from a transform whose structure agrees: it is the verdict
    estimate: _Estimate | None = None


class _Aligner:
    """One pair's working images, features and attempts, computed once each."""

    def __init__(self, before: np.ndarray, after: np.ndarray, min_area: float):
        self.before, self.after, self.min_area = before, after, min_area
        self.before_size = (before.shape[1], before.shape[0])
        self.after_size = (after.shape[1], after.shape[0])
        self._greys: dict = {}
        self._before_features: dict = {}

    def grey(self, which: str, side: int, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
        """(grey, normalised grey, factor) of the before or the after at a working size, cached."""
        key = (which, side, mirrored)
        if key not in self._greys:
            if mirrored:
                grey, norm, factor = self.grey(which, side)
                self._greys[key] = (
                    np.ascontiguousarray(grey[:, ::-1]),
                    np.ascontiguousarray(norm[:, ::-1]),
                    factor,
                )
            else:
                grey, factor = _grey(self.before if which == "before" else self.after, side)
                self._greys[key] = (grey, _normalised(grey), factor)
        return self._greys[key]

    def structure(self, alignment: Alignment, mirrored: bool = False) -> float:
        side = _DETECTORS[0].side
        return _structure(self.grey("before", side)[0], self.grey("after", side, mirrored)[0], alignment)

    def attempt(self, mirrored: bool = False) -> _Attempt:
        """Place the after (or its mirror image) with each detector in turn."""
        outcome = _Attempt()
        for spec in _DETECTORS:
            detector = spec.create()
            _, before_norm, before_factor = self.grey("before", spec.side)
            _, after_norm, after_factor = self.grey("after", spec.side, mirrored)
            if spec.name not in self._before_features:
                self._before_features[spec.name] = detector.detectAndCompute(before_norm, None)
            estimate = _estimate(detector, after_norm, self._before_features[spec.name])
            if estimate is not None and (
                outcome.estimate is None or estimate.inliers > outcome.estimate.inliers
            ):
                outcome.estimate = estimate
            if estimate is None or estimate.inliers < _MIN_INLIERS:
                continue
            matrix = _to_full(estimate.matrix, before_factor, after_factor)
            candidate = _snap_to_identity(Alignment(_tuple(matrix), self.before_size, self.after_size))
            # Structure first: a transform that puts a different photo's edges elsewhere says nothing
            # about crops or angles, and a refusal should not pretend it does.
            structure = self.structure(candidate, mirrored)
            if structure < MIN_STRUCTURE:
                outcome.reason = outcome.reason or (
                    "the after does not show the same photo as the before: aligned, their structure "
                    f"disagrees (gradient agreement {structure:.2f}, at least {MIN_STRUCTURE} expected)"
                )
                continue
            reason = _implausible(candidate, self.min_area)
            if reason is not None:
                return _Attempt(reason=reason, verified=True, estimate=estimate)
            return _Attempt(Alignment(candidate.matrix, self.before_size, self.after_size, structure))
        return outcome


def align(before: np.ndarray, after: np.ndarray, min_area: float = MIN_AREA) -> Alignment:
    """Find the after's frame in the before (uint8 HxWx3 or HxW arrays, any sizes).

    Returns an ``Alignment`` between the arrays' pixels; raises ``NotAligned`` when the after is not the
    same photo, is mirrored, is blank, or shows less than ``min_area`` of the before.
    """
    pair = _Aligner(before, after, min_area)
    _check_blank(pair.grey("before", _DETECTORS[0].side)[0], "before")
    _check_blank(pair.grey("after", _DETECTORS[0].side)[0], "after")

    found = pair.attempt()
    if found.alignment is not None:
        return found.alignment
    if found.verified:
        raise NotAligned(found.reason)

    # Too few features to tell (tiny or plain photos): the whole before, resized, if the structure agrees.
    (bw, bh), (aw, ah) = pair.before_size, pair.after_size
    if abs(math.log((bw / bh) / (aw / ah))) < 0.02:
        candidate = identity(pair.before_size, pair.after_size)
        structure = pair.structure(candidate)
        if structure >= MIN_STRUCTURE_UNPLACED:
            return Alignment(candidate.matrix, pair.before_size, pair.after_size, structure)

    # Only to name the mistake: the same photo, flipped, passes every check.
    if pair.attempt(mirrored=True).alignment is not None:
        raise NotAligned("the after is a mirror image of the before (flipped); export it unflipped")
    if found.reason is not None:
        raise NotAligned(found.reason)
    estimate = found.estimate
    agree = (
        f"{estimate.inliers} of {estimate.matches} feature matches agree" if estimate else "too few features"
    )
    raise NotAligned(
        f"the after does not show the same photo as the before (no consistent alignment: {agree})"
    )


def _implausible(alignment: Alignment, min_area: float) -> str | None:
    """Why an estimated transform cannot be an editor's crop, or None."""
    if abs(alignment.rotation_deg) > MAX_ROTATION_DEG:
        return (
            f"the after is turned by {alignment.rotation_deg:.0f}° against the before (straightening up to "
            f"{MAX_ROTATION_DEG:.0f}° is accepted; check the photo's orientation)"
        )
    outside = _outside_fraction(alignment)
    if outside > MAX_OUTSIDE:
        return (
            f"the after shows more than the before: {outside:.0%} of its frame lies outside the before "
            "(a border, or a canvas widened after straightening?)"
        )
    if alignment.area_fraction < min_area:
        return (
            f"the after shows {alignment.area_fraction:.0%} of the area of the before; crops down to "
            f"{min_area:.0%} are accepted"
        )
    return None


def _snap_to_identity(alignment: Alignment) -> Alignment:
    """An after within IDENTITY_TOLERANCE of the whole before is the whole before: a plain resize is
    exact, where a warp would blur the thumbnails by an estimate's noise. On a photo of a few hundred
    pixels features are placed to about a pixel, so anything closer than IDENTITY_PIXELS is too."""
    bw, bh = alignment.before_size
    truth = identity(alignment.before_size, alignment.after_size)
    error = np.abs(alignment.corners() - truth.corners()).max()
    return truth if error <= max(IDENTITY_TOLERANCE * max(bw, bh), IDENTITY_PIXELS) else alignment
