"""posebh_hf.geometry: boxes <-> (center, scale), UDP / classic affine matrices, point and image warps."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from posebh_hf.geometry import (
    apply_affine,
    box_to_center_scale,
    center_scale_to_box,
    compose_affine,
    get_affine_matrix,
    get_udp_warp_matrix,
    horizontal_flip_matrix,
    invert_affine,
    mpii_center_scale,
    sanitize_box_xywh,
    warp_crop,
)


def _hf_vitpose():
    return pytest.importorskip("transformers.models.vitpose.image_processing_pil_vitpose")


# ---------------------------------------------------------------------------------------------------------------
# boxes
# ---------------------------------------------------------------------------------------------------------------


def test_box_to_center_scale_known_values() -> None:
    # tall box: width grows to 0.75 * h; wide box: height grows to w / 0.75
    c, s = box_to_center_scale([10, 20, 30, 200], 0.75)
    np.testing.assert_allclose(c, [25, 120])
    np.testing.assert_allclose(s, [150 / 200 * 1.25, 200 / 200 * 1.25], rtol=1e-6)
    c, s = box_to_center_scale([0, 0, 300, 100], 0.75, padding=1.0)
    np.testing.assert_allclose(c, [150, 50])
    np.testing.assert_allclose(s, [1.5, 2.0], rtol=1e-6)


def test_box_to_center_scale_matches_transformers_and_batches() -> None:
    hf = _hf_vitpose()
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, 500, (50, 2)), rng.uniform(5, 400, (50, 2))], axis=1)
    centers, scales = box_to_center_scale(boxes, 192 / 256)
    for box, c, s in zip(boxes, centers, scales, strict=True):
        ref_c, ref_s = hf.box_to_center_and_scale(box, image_width=192, image_height=256)
        np.testing.assert_allclose(c, ref_c, rtol=1e-6)
        np.testing.assert_allclose(s, ref_s, rtol=1e-6)
        c1, s1 = box_to_center_scale(box, 192 / 256)
        np.testing.assert_array_equal(c1, c)
        np.testing.assert_array_equal(s1, s)


def test_center_scale_to_box_inverts_aspect_correct_boxes() -> None:
    box = np.array([[12.0, 30.0, 75.0, 100.0], [0.0, 0.0, 150.0, 200.0]])  # already 0.75 aspect
    c, s = box_to_center_scale(box, 0.75)
    np.testing.assert_allclose(center_scale_to_box(c, s), box, atol=1e-4)
    full = center_scale_to_box(c[0], s[0], padding=1.0)  # the whole padded ROI
    np.testing.assert_allclose(full[2:], box[0, 2:] * 1.25, atol=1e-4)


def test_sanitize_box_xywh() -> None:
    np.testing.assert_allclose(sanitize_box_xywh([-5, 10, 50, 20], 640, 480), [0, 10, 49, 19])
    np.testing.assert_allclose(sanitize_box_xywh([600, 470, 100, 100], 640, 480), [600, 470, 39, 9])
    assert sanitize_box_xywh([10, 10, 1, 30], 640, 480) is None  # x2 == x1
    assert sanitize_box_xywh([700, 10, 10, 10], 640, 480) is None


def test_mpii_center_scale() -> None:
    c, s = mpii_center_scale([101.0, 201.0], 2.0)
    np.testing.assert_allclose(c, [100.0, 200.0 + 30.0])
    np.testing.assert_allclose(s, [2.5, 2.5])
    c, s = mpii_center_scale([-1.0, 50.0], 2.0)  # "unknown" centre: no shift, no enlargement
    np.testing.assert_allclose(c, [-2.0, 49.0])
    np.testing.assert_allclose(s, [2.0, 2.0])


# ---------------------------------------------------------------------------------------------------------------
# matrices
# ---------------------------------------------------------------------------------------------------------------


def test_udp_matrix_maps_center_and_roi_corners() -> None:
    center, roi = np.array([320.5, 210.25]), np.array([150.0, 200.0])
    m = get_udp_warp_matrix(center, roi, 0.0, (192, 256))
    np.testing.assert_allclose(apply_affine(center[None], m), [[95.5, 127.5]], atol=1e-9)
    corners = np.array([center - roi / 2, center + roi / 2])
    np.testing.assert_allclose(apply_affine(corners, m), [[0, 0], [191, 255]], atol=1e-9)
    for rot in (-70.0, 33.0):  # rotation keeps the centre fixed
        m = get_udp_warp_matrix(center, roi, rot, (192, 256))
        np.testing.assert_allclose(apply_affine(center[None], m), [[95.5, 127.5]], atol=1e-9)


def test_udp_matrix_matches_transformers_get_warp_matrix() -> None:
    hf = _hf_vitpose()
    rng = np.random.default_rng(1)
    for _ in range(20):
        center, roi, rot = rng.uniform(0, 600, 2), rng.uniform(20, 400, 2), rng.uniform(-80, 80)
        ref = hf.get_warp_matrix(rot, center * 2.0, np.array([191.0, 255.0]), roi)
        np.testing.assert_allclose(
            get_udp_warp_matrix(center, roi, rot, (192, 256)), ref, rtol=1e-5, atol=1e-3
        )


def _three_point_affine(center, scale_px, rot, size, shift=(0.0, 0.0)) -> np.ndarray:
    """Independent reference: mmpose's get_affine_transform built from three point pairs with OpenCV."""

    def rotate(pt, rad):
        sn, cs = math.sin(rad), math.cos(rad)
        return np.array([pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    c = np.asarray(center, float) + np.asarray(shift) * np.asarray(scale_px)
    src_dir = rotate([0.0, scale_px[0] * -0.5], math.radians(rot))
    dst_c = np.array([size[0] * 0.5, size[1] * 0.5])
    src = np.stack([c, c + src_dir, third(c, c + src_dir)])
    dst_1 = dst_c + np.array([0.0, size[0] * -0.5])
    dst = np.stack([dst_c, dst_1, third(dst_c, dst_1)])
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


@pytest.mark.parametrize("rot", [0.0, 25.0, -61.5])
def test_classic_affine_matches_three_point_construction(rot: float) -> None:
    rng = np.random.default_rng(2)
    for _ in range(10):
        center, roi, shift = rng.uniform(0, 600, 2), rng.uniform(30, 400, 2), rng.uniform(-0.1, 0.1, 2)
        ref = _three_point_affine(center, roi, rot, (192, 256), shift)
        ours = get_affine_matrix(center, roi, rot, (192, 256), shift=shift)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=2e-3)


def test_matrices_batch_like_single() -> None:
    rng = np.random.default_rng(3)
    centers, rois, rots = rng.uniform(0, 500, (6, 2)), rng.uniform(30, 300, (6, 2)), rng.uniform(-80, 80, 6)
    for fn in (get_udp_warp_matrix, get_affine_matrix):
        batched = fn(centers, rois, rots, (192, 256))
        assert batched.shape == (6, 2, 3)
        for i in range(6):
            np.testing.assert_allclose(batched[i], fn(centers[i], rois[i], rots[i], (192, 256)), atol=1e-12)


def test_invert_compose_and_apply_affine() -> None:
    m = get_udp_warp_matrix([100.0, 150.0], [120.0, 160.0], 37.0, (192, 256))
    inv = invert_affine(m)
    pts = np.random.default_rng(4).uniform(0, 300, (20, 2))
    np.testing.assert_allclose(apply_affine(apply_affine(pts, m), inv), pts, atol=1e-9)
    np.testing.assert_allclose(compose_affine(inv, m), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    flip = horizontal_flip_matrix(640)
    np.testing.assert_allclose(apply_affine(np.array([[0.0, 5.0], [639.0, 7.0]]), flip), [[639, 5], [0, 7]])
    batched = apply_affine(np.stack([pts, pts]), np.stack([m, inv]))
    np.testing.assert_allclose(batched[0], apply_affine(pts, m))
    np.testing.assert_allclose(batched[1], apply_affine(pts, inv))
    assert apply_affine(pts.astype(np.float32), m).dtype == np.float32
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.zeros((2, 3)))


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="box_xywh"):
        box_to_center_scale([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="scale_px"):
        get_udp_warp_matrix([0, 0], [0, 10], 0, (192, 256))
    with pytest.raises(ValueError, match="output_size"):
        get_affine_matrix([0, 0], [10, 10], 0, (192,))
    with pytest.raises(ValueError, match="matrix"):
        warp_crop(np.zeros((10, 10, 3), np.uint8), np.eye(3), (8, 8))


# ---------------------------------------------------------------------------------------------------------------
# image warp
# ---------------------------------------------------------------------------------------------------------------


def _blob(height: int, width: int, x: float, y: float, sigma: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def _centroid(img: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    w = img.astype(np.float64)
    return np.array([(xx * w).sum() / w.sum(), (yy * w).sum() / w.sum()])


@pytest.mark.parametrize("udp", [True, False])
def test_warp_crop_moves_content_with_the_matrix(udp: bool) -> None:
    point = np.array([233.3, 151.7])
    image = (_blob(300, 400, *point, sigma=3.0) * 255).astype(np.float32)[..., None].repeat(3, axis=2)
    fn = get_udp_warp_matrix if udp else get_affine_matrix
    m = fn([220.0, 160.0], [90.0, 120.0], 28.0, (192, 256))
    crop = warp_crop(image, m, (192, 256))
    assert crop.shape == (256, 192, 3) and crop.dtype == np.float32
    expected = apply_affine(point[None], m)[0]
    assert np.linalg.norm(_centroid(crop[..., 0]) - expected) < 0.05


def test_warp_crop_accepts_views_gray_and_zero_border() -> None:
    image = np.random.default_rng(5).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    m = get_udp_warp_matrix([30.0, 25.0], [60.0, 80.0], 0.0, (48, 64))
    flipped_view = image[:, ::-1]
    np.testing.assert_array_equal(
        warp_crop(flipped_view, m, (48, 64)), warp_crop(np.ascontiguousarray(flipped_view), m, (48, 64))
    )
    assert warp_crop(image[..., 0], m, (48, 64)).shape == (64, 48)
    assert warp_crop(image[..., :1], m, (48, 64)).shape == (64, 48, 1)
    far = get_udp_warp_matrix([1000.0, 1000.0], [60.0, 80.0], 0.0, (48, 64))
    assert warp_crop(image, far, (48, 64)).max() == 0


def test_warp_crop_writes_into_a_given_batch_slice() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    matrix = np.array([[0.5, 0.1, 1.0], [-0.1, 0.5, 2.0]])
    batch = np.zeros((3, 32, 24, 3), np.uint8)
    written = warp_crop(image, matrix, (24, 32), out=batch[1])
    assert np.shares_memory(written, batch)
    np.testing.assert_array_equal(batch[1], warp_crop(image, matrix, (24, 32)))
    assert not batch[0].any() and not batch[2].any()
    with pytest.raises(ValueError, match="out must be a contiguous uint8 array of shape"):
        warp_crop(image, matrix, (24, 32), out=np.zeros((32, 24, 3), np.float32))
