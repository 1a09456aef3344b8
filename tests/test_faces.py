"""rlcore.faces on real photos shipped in installed packages."""

import numpy as np
import pytest

from rlcore import faces
from tests.photos import photo


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_faces_found_and_weighted(name):
    image = photo(name)
    boxes = faces.detect_faces(image)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    weights = faces.face_weights(image, face_weight=2.0)
    assert weights.shape == image.shape[:2] and weights.dtype == np.float32
    assert weights[y + h // 2, x + w // 2] == pytest.approx(3.0, abs=0.01)
    assert weights[0, 0] == 1.0 and weights.min() == 1.0
    # Feathered: a band of intermediate weights around the face, not a hard step.
    assert np.count_nonzero((weights > 1.1) & (weights < 2.9)) > w


@pytest.mark.parametrize("name", ["coffee", "rocket"])
def test_no_faces(name):
    image = photo(name)
    assert faces.detect_faces(image) == []
    assert np.all(faces.face_weights(image, 5.0) == 1.0)


def test_client_mask():
    mask = np.zeros((4, 5), np.uint8)
    mask[1, 2] = 255
    mask[2, 2] = 128
    w = faces.mask_to_weights(mask, face_weight=2.0)
    assert w[0, 0] == 1.0 and w[1, 2] == pytest.approx(3.0) and 1.9 < w[2, 2] < 2.1


def test_detection_in_parallel_threads():
    """Web servers run uploads in threads: one shared cascade raced (cv2.error in getScaleData)."""
    from concurrent.futures import ThreadPoolExecutor

    image = photo("astronaut")
    expected = faces.detect_faces(image)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: faces.detect_faces(image), range(48)))
    assert all(found == expected for found in results)
