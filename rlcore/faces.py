"""Face weighting for the reward: colour errors on faces can count more than elsewhere.

Detection uses OpenCV's frontal-face Haar cascade, shipped inside opencv-python-headless 4.x
(``cv2.data.haarcascades``), so nothing is downloaded at run time. A client that knows better (its own
detector, a hand-painted mask) passes a mask image instead, through ``mask_to_weights``.
"""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np

__all__ = ["detect_faces", "face_mask", "face_weights", "mask_to_weights", "weights_from_mask"]

_CASCADE = "haarcascade_frontalface_default.xml"
_DETECT_SIDE = 640  # detection runs on a copy at most this large: faster, and the cascade is scale-free
_FEATHER = 0.25  # blur sigma as a fraction of the face size: soft edges, no hard step in the weights


# One classifier per thread: detectMultiScale keeps per-call scratch state inside the classifier object, so
# a classifier shared by threads (a threaded web server's concurrent uploads) returns wrong boxes or fails
# with cv2.error in getScaleData. Loading one takes ~60 ms, once per thread.
_local = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        path = os.path.join(cv2.data.haarcascades, _CASCADE)
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {path}")
        _local.cascade = cascade
    return cascade


def detect_faces(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces in a uint8 HxWx3 RGB image as (x, y, w, h) boxes in the image's pixels."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detect_faces expects a uint8 HxWx3 array, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    scale = min(1.0, _DETECT_SIDE / max(h, w))
    small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)), cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    min_side = max(24, round(0.05 * min(gray.shape)))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side))
    return [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]


def _feathered_mask(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """1 inside each face ellipse, 0 far outside, with Gaussian-blurred edges; float32 (H, W) in [0, 1]."""
    mask = np.zeros(shape, np.float32)
    for x, y, w, h in boxes:
        face = np.zeros(shape, np.float32)
        cv2.ellipse(face, (x + w // 2, y + h // 2), (w // 2, round(h * 0.6)), 0, 0, 360, 1.0, thickness=-1)
        sigma = _FEATHER * max(w, h) / 2
        face = cv2.GaussianBlur(face, (0, 0), sigmaX=sigma)
        np.maximum(mask, face, out=mask)
    return mask


def face_mask(image: np.ndarray, boxes: list[tuple[int, int, int, int]] | None = None) -> np.ndarray:
    """Where the faces are, float32 (H, W) in [0, 1] with soft edges; `boxes` from detect_faces, else
    detected here (pass them when already found, to run the detector once)."""
    return _feathered_mask(np.asarray(image).shape[:2], detect_faces(image) if boxes is None else boxes)


def weights_from_mask(mask: np.ndarray, face_weight: float = 1.0) -> np.ndarray:
    """The one mask-to-weight formula: a [0, 1] mask -> reward weights 1 + face_weight * mask, float32."""
    return (1.0 + np.float32(face_weight) * np.asarray(mask, np.float32)).astype(np.float32)


def face_weights(image: np.ndarray, face_weight: float = 1.0) -> np.ndarray:
    """Per-pixel reward weights, float32 (H, W): 1 + face_weight inside detected faces, 1 elsewhere."""
    return weights_from_mask(face_mask(image), face_weight)


def mask_to_weights(mask: np.ndarray, face_weight: float = 1.0) -> np.ndarray:
    """A client's mask (uint8 HxW, or HxWxC whose first channel is used; 255 = face) -> weights."""
    mask = np.asarray(mask)
    if mask.dtype != np.uint8 or mask.ndim not in (2, 3):
        raise ValueError(f"mask must be uint8 HxW or HxWxC, got {mask.dtype} {mask.shape}")
    if mask.ndim == 3:
        mask = mask[..., 0]
    return weights_from_mask(mask.astype(np.float32) / 255.0, face_weight)
