"""posebh_hf.transforms: flip, half-body, scale/rotation, affine crop, normalisation, full train transform."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest
from conftest import shared_path

from posebh_hf.codecs import decode_heatmaps, heatmap_stride
from posebh_hf.geometry import (
    apply_affine,
    box_to_center_scale,
    get_udp_warp_matrix,
    invert_affine,
    warp_crop,
)
from posebh_hf.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    Compose,
    HalfBody,
    RandomFlip,
    RandomScaleRotation,
    TopDownAffine,
    TopDownSample,
    TopDownTestTransform,
    TopDownTrainTransform,
    augment_config_for,
    flip_keypoints,
    flip_sample,
    half_body_center_scale,
    jitter_center,
    normalize_image,
)

COCO_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
COCO_UPPER = tuple(range(11))


def _person(rng: np.random.Generator, height: int = 300, width: int = 400) -> TopDownSample:
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    kpts = np.stack([rng.uniform(120, 280, 17), np.linspace(60, 260, 17)], axis=-1)
    vis = np.ones(17, np.float32)
    center, scale = box_to_center_scale([110, 50, 180, 220], 0.75)
    return TopDownSample.create(image, kpts, vis, center, scale)


def _dot_image(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """A dark image with a 3x3 dot of a distinct value at each rounded point (value 10 + 10 k)."""
    image = np.zeros((height, width, 3), np.uint8)
    for k, (x, y) in enumerate(np.rint(points).astype(int)):
        image[y - 1 : y + 2, x - 1 : x + 2] = 10 + 10 * k
    return image


# ---------------------------------------------------------------------------------------------------------------
# flip
# ---------------------------------------------------------------------------------------------------------------


def test_flip_twice_is_identity() -> None:
    sample = _person(np.random.default_rng(0))
    twice = flip_sample(flip_sample(sample, COCO_FLIP), COCO_FLIP)
    np.testing.assert_array_equal(twice.image, sample.image)
    np.testing.assert_allclose(twice.keypoints, sample.keypoints, atol=1e-4)
    np.testing.assert_array_equal(twice.visibility, sample.visibility)
    np.testing.assert_allclose(twice.center, sample.center, atol=1e-4)
    assert not twice.flipped and flip_sample(sample, COCO_FLIP).flipped


def test_flipped_keypoints_land_on_mirrored_content() -> None:
    rng = np.random.default_rng(1)
    kpts = np.stack([rng.integers(5, 395, 17), rng.integers(5, 295, 17)], axis=-1).astype(np.float32)
    image = _dot_image(kpts, 300, 400)
    sample = TopDownSample.create(image, kpts, np.ones(17), [200, 150], [1.0, 1.0])
    flipped = flip_sample(sample, COCO_FLIP)
    assert flipped.center[0] == 399 - 200
    for k, (x, y) in enumerate(np.rint(flipped.keypoints).astype(int)):
        # new keypoint k is old keypoint COCO_FLIP[k], mirrored; its dot carries the old id
        assert flipped.image[y, x, 0] == 10 + 10 * COCO_FLIP[k], k


def test_flip_keypoints_zeroes_invisible_like_mmpose() -> None:
    kpts = np.array([[10.0, 5.0], [20.0, 6.0], [30.0, 7.0]])
    out, vis = flip_keypoints(kpts, np.array([1.0, 0.0, 1.0]), (0, 2, 1), 100)
    np.testing.assert_array_equal(vis, [1, 1, 0])
    np.testing.assert_allclose(out, [[89, 5], [69, 7], [0, 0]])


def test_random_flip_probability_and_determinism() -> None:
    sample = _person(np.random.default_rng(2))
    flips = [RandomFlip(COCO_FLIP, 0.5)(sample, np.random.default_rng(s)).flipped for s in range(400)]
    assert 0.4 < np.mean(flips) < 0.6
    assert not RandomFlip(COCO_FLIP, 0.0)(sample, np.random.default_rng(0)).flipped


# ---------------------------------------------------------------------------------------------------------------
# half-body
# ---------------------------------------------------------------------------------------------------------------


def _expected_cs(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, h = points.max(0) - points.min(0)
    w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
    return points.mean(0), np.array([w, h]) / 200 * 1.5


def test_half_body_selects_only_upper_or_lower() -> None:
    sample = _person(np.random.default_rng(3))
    sample = replace(sample, visibility=np.where(np.arange(17) == 4, 0.0, 1.0).astype(np.float32))
    visible = sample.visibility > 0
    upper = sample.keypoints[visible & (np.arange(17) < 11)]
    lower = sample.keypoints[visible & (np.arange(17) >= 11)]
    (cu, su), (cl, sl) = _expected_cs(upper), _expected_cs(lower)
    transform = HalfBody(COCO_UPPER, 0.75, prob=1.0)
    picks = []
    for seed in range(300):
        out = transform(sample, np.random.default_rng(seed))
        if np.allclose(out.center, cu, atol=1e-3):
            np.testing.assert_allclose(out.scale, su, rtol=1e-5)
            picks.append("upper")
        else:
            np.testing.assert_allclose(out.center, cl, atol=1e-3)
            np.testing.assert_allclose(out.scale, sl, rtol=1e-5)
            picks.append("lower")
    # the N(0,1) < 0.5 quirk: upper with probability Phi(0.5) ~ 0.69
    assert 0.6 < picks.count("upper") / len(picks) < 0.78


def test_half_body_thresholds() -> None:
    sample = _person(np.random.default_rng(4))
    few = replace(sample, visibility=(np.arange(17) < 8).astype(np.float32))  # 8 visible: not > 8
    out = HalfBody(COCO_UPPER, 0.75, prob=1.0)(few, np.random.default_rng(0))
    np.testing.assert_array_equal(out.center, few.center)
    # only 2 upper, 1 lower visible: upper is the fallback, and 2 joints are still enough
    vis = np.zeros(17)
    vis[[0, 1, 12]] = 1
    res = half_body_center_scale(sample.keypoints, vis, COCO_UPPER, np.random.default_rng(0), 0.75)
    assert res is not None
    np.testing.assert_allclose(res[0], sample.keypoints[[0, 1]].mean(0), atol=1e-4)
    vis[1] = 0  # 1 upper, 1 lower: abort
    assert half_body_center_scale(sample.keypoints, vis, COCO_UPPER, np.random.default_rng(0), 0.75) is None


# ---------------------------------------------------------------------------------------------------------------
# scale / rotation
# ---------------------------------------------------------------------------------------------------------------


def test_random_scale_rotation_ranges_and_determinism() -> None:
    sample = _person(np.random.default_rng(5))
    transform = RandomScaleRotation(0.5, 40.0, 0.6)
    outs = [transform(sample, np.random.default_rng(s)) for s in range(500)]
    ratios = np.array([o.scale[0] / sample.scale[0] for o in outs])
    rots = np.array([o.rotation for o in outs])
    assert ratios.min() >= 0.5 - 1e-6 and ratios.max() <= 1.5 + 1e-6
    assert np.abs(rots).max() <= 80 and 0.3 < np.mean(rots == 0) < 0.5
    again = transform(sample, np.random.default_rng(7))
    assert again.rotation == outs[7].rotation and np.array_equal(again.scale, outs[7].scale)


def test_jitter_center_bounds() -> None:
    shifts = (
        np.array([jitter_center([100, 100], [50, 80], np.random.default_rng(s)) for s in range(400)]) - 100
    )
    moved = np.any(shifts != 0, axis=1)
    assert 0.2 < moved.mean() < 0.4
    assert np.all(np.abs(shifts) <= np.array([10, 16]) + 1e-4)


# ---------------------------------------------------------------------------------------------------------------
# affine crop
# ---------------------------------------------------------------------------------------------------------------


def _blob(height: int, width: int, x: float, y: float, sigma: float = 2.5) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("udp", [True, False])
@pytest.mark.parametrize("rotation", [0.0, 35.0])
def test_crop_puts_marked_pixel_at_transformed_keypoint(udp: bool, rotation: float) -> None:
    point = np.array([[207.0, 133.0]])
    image = np.zeros((300, 400, 3), np.uint8)
    image[133, 207] = 255  # one marked pixel
    sample = TopDownSample.create(image, point, [1.0], [200, 150], [0.5, 0.6667])  # ~2x zoom: pixel survives
    out = TopDownAffine((192, 256), use_udp=udp)(replace(sample, rotation=rotation), None)
    brightest = np.array(np.unravel_index(np.argmax(out.image[..., 0]), out.image.shape[:2]))[::-1]
    weights = out.image[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:256, 0:192]
    centroid = np.array([(xx * weights).sum(), (yy * weights).sum()]) / weights.sum()
    assert np.abs(centroid - out.keypoints[0]).max() <= 0.5
    assert np.abs(brightest - out.keypoints[0]).max() <= 1.0


def test_udp_crop_maps_center_to_crop_center() -> None:
    sample = _person(np.random.default_rng(6))
    sample = replace(sample, keypoints=sample.center[None].repeat(17, 0), rotation=23.0)
    out = TopDownAffine((192, 256), use_udp=True)(sample, None)
    np.testing.assert_allclose(out.keypoints, [[95.5, 127.5]] * 17, atol=1e-3)
    plain = TopDownAffine((192, 256), use_udp=False)(sample, None)
    np.testing.assert_allclose(plain.keypoints, [[96.0, 128.0]] * 17, atol=1e-3)


def test_plain_affine_moves_only_visible_joints() -> None:
    sample = _person(np.random.default_rng(7))
    vis = np.ones(17, np.float32)
    vis[3] = 0
    sample = replace(sample, visibility=vis)
    plain = TopDownAffine((192, 256), use_udp=False)(sample, None)
    udp = TopDownAffine((192, 256), use_udp=True)(sample, None)
    np.testing.assert_array_equal(plain.keypoints[3], sample.keypoints[3])
    np.testing.assert_allclose(
        udp.keypoints[3], apply_affine(sample.keypoints[3:4], udp.matrix)[0], atol=1e-4
    )
    with pytest.raises(ValueError, match="twice"):
        TopDownAffine()(udp, None)


# ---------------------------------------------------------------------------------------------------------------
# normalisation and full transforms
# ---------------------------------------------------------------------------------------------------------------


def test_normalize_image() -> None:
    img = np.random.default_rng(8).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    out = normalize_image(img)
    expected = ((img / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert normalize_image(np.stack([img, img])).shape == (2, 3, 4, 5)


def test_dataset_configs() -> None:
    assert augment_config_for("coco").use_udp and augment_config_for("coco").half_body
    assert augment_config_for("mpii").use_udp and not augment_config_for("mpii").half_body
    for name in ("aic", "ap10k", "apt36k", "coco_wholebody"):
        cfg = augment_config_for(name)
        assert not cfg.use_udp and cfg.half_body and cfg.codec().encoding == "msra"
    with pytest.raises(ValueError, match="known"):
        augment_config_for("nope")
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=2.0)


@pytest.mark.parametrize("dataset", ["coco", "aic"])
def test_train_transform_is_deterministic_and_targets_follow_keypoints(dataset: str) -> None:
    sample = _person(np.random.default_rng(9))
    transform = TopDownTrainTransform(augment_config_for(dataset), COCO_FLIP, COCO_UPPER)
    args = (sample.image, sample.keypoints, sample.visibility, sample.center, sample.scale)
    a = transform(*args, np.random.default_rng(123))
    b = transform(*args, np.random.default_rng(123))
    for key in ("pixel_values", "target", "target_weight", "keypoints"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["pixel_values"].shape == (3, 256, 192) and a["target"].shape == (17, 64, 48)
    # decoded targets sit on the transformed keypoints (in heatmap pixels)
    udp = dataset == "coco"
    coords, _ = decode_heatmaps(a["target"][None], "udp" if udp else "default")
    stride = heatmap_stride((192, 256), (48, 64), udp)
    ok = a["target_weight"] > 0
    tol = 0.1 if udp else 0.5 + 0.25  # MSRA targets sit on the rounded centre
    margin_ok = ok & np.all((a["keypoints"] / stride > 4) & (a["keypoints"] / stride < [43, 59]), axis=1)
    assert margin_ok.any()
    err = np.abs(coords[0] - a["keypoints"] / stride)[margin_ok]
    assert err.max() <= tol


def test_test_transform_and_compose() -> None:
    sample = _person(np.random.default_rng(10))
    cfg = augment_config_for("coco")
    out = TopDownTestTransform(cfg)(sample.image, sample.center, sample.scale)
    crop = warp_crop(
        sample.image, get_udp_warp_matrix(sample.center, sample.scale * 200, 0, (192, 256)), (192, 256)
    )
    np.testing.assert_allclose(out["pixel_values"], normalize_image(crop))
    composed = Compose([RandomFlip(COCO_FLIP, 1.0), TopDownAffine()])
    assert composed(sample, np.random.default_rng(0)).flipped
    assert "RandomFlip" in repr(composed)


# ---------------------------------------------------------------------------------------------------------------
# parity with transformers' ViTPose preprocessing ("same crops as the reference path")
# ---------------------------------------------------------------------------------------------------------------


def test_udp_crop_matches_transformers_vitpose_processor() -> None:
    root = shared_path("real", "coco")
    pytest.importorskip("scipy")
    image_mod = pytest.importorskip("PIL.Image")
    transformers = pytest.importorskip("transformers")
    processor = transformers.VitPoseImageProcessorPil(do_normalize=False)  # rescale only: [0, 1]
    annotations = json.loads((root / "test_coco.json").read_text())
    means = []
    for info in annotations["images"]:
        pil = image_mod.open(root / info["file_name"]).convert("RGB")
        image = np.asarray(pil)
        boxes = [a["bbox"] for a in annotations["annotations"] if a["image_id"] == info["id"]]
        reference = processor(images=pil, boxes=[boxes], return_tensors="np")["pixel_values"]
        for box, ref in zip(boxes, reference, strict=True):
            center, scale = box_to_center_scale(box, 192 / 256)
            matrix = get_udp_warp_matrix(center, scale * 200, 0.0, (192, 256))
            ours = warp_crop(image, matrix, (192, 256)).astype(np.float32).transpose(2, 0, 1) / 255.0
            diff = np.abs(ours - ref)
            means.append(diff.mean())
            assert diff.mean() <= 1 / 255, (info["file_name"], box, diff.mean())
            # away from the image border (where scipy's and OpenCV's constant padding differ) only rounding differs:
            # OpenCV 4's bilinear warp is fixed-point (1/32-px positions, 10-bit weights), a few grey levels at most
            yy, xx = np.mgrid[0:256, 0:192]
            src = apply_affine(np.stack([xx, yy], -1).astype(np.float64), invert_affine(matrix))
            h, w = image.shape[:2]
            inner = (src[..., 0] >= 1) & (src[..., 0] <= w - 2) & (src[..., 1] >= 1) & (src[..., 1] <= h - 2)
            assert diff[:, inner].max() <= 6 / 255 + 1e-5
    assert len(means) >= 10


# ---------------------------------------------------------------------------------------------------------------
# throughput (the data helper needs >= 300 samples/s/core for decode + augment + targets)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_transform_throughput() -> None:
    """CPU time of one thread (robust to other load on the machine); JPEG decoding is the data helper's."""
    import cv2

    sample = _person(np.random.default_rng(11), 480, 640)
    transform = TopDownTrainTransform(augment_config_for("coco"), COCO_FLIP, COCO_UPPER)
    rng = np.random.default_rng(0)
    args = (sample.image, sample.keypoints, sample.visibility, sample.center, sample.scale)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for _ in range(20):
            transform(*args, rng)
        n, start = 300, time.process_time()
        for _ in range(n):
            transform(*args, rng)
        rate = n / (time.process_time() - start)
    finally:
        cv2.setNumThreads(threads)
    assert rate >= 300, f"{rate:.0f} samples/s/core (augment + crop + normalise + targets, no JPEG decode)"
