"""Top-down crop geometry (layer 0): boxes, (center, scale), affine matrices and image warps.

Conventions (the mmpose ones, so numbers match the reference implementation):

- A box is COCO ``[x, y, w, h]`` in image pixels.
- ``center`` is ``(x, y)`` in image pixels; ``scale`` is the ROI size ``(w, h)`` in units of
  ``pixel_std = 200`` pixels (so the ROI is ``scale * 200`` pixels wide/high). Functions whose argument is named
  ``scale_px`` take the ROI size in pixels instead (``scale * pixel_std``).
- ``output_size`` / ``input_size`` is ``(width, height)`` of the crop, e.g. ``(192, 256)``.
- Affine matrices are ``[2, 3]`` float64 mapping source (image) points to destination (crop) points, the form
  ``cv2.warpAffine`` takes.

Only numpy and OpenCV are used here; nothing in this module knows about heatmaps (that is ``codecs``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

PIXEL_STD = 200.0
DEFAULT_PADDING = 1.25
DEFAULT_INPUT_SIZE = (192, 256)  # (width, height)

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_PADDING",
    "PIXEL_STD",
    "apply_affine",
    "box_to_center_scale",
    "center_scale_to_box",
    "compose_affine",
    "get_affine_matrix",
    "get_udp_warp_matrix",
    "horizontal_flip_matrix",
    "invert_affine",
    "mpii_center_scale",
    "sanitize_box_xywh",
    "warp_crop",
]


def _check_size(output_size: Sequence[int], name: str = "output_size") -> tuple[int, int]:
    if len(output_size) != 2 or min(output_size) < 2:
        raise ValueError(f"{name} must be (width, height) with both >= 2, got {tuple(output_size)}")
    return int(output_size[0]), int(output_size[1])


# --------------------------------------------------------------------------------------------------------------
# Boxes <-> (center, scale)
# --------------------------------------------------------------------------------------------------------------


def box_to_center_scale(
    box_xywh: Sequence[float] | np.ndarray,
    aspect_ratio: float = DEFAULT_INPUT_SIZE[0] / DEFAULT_INPUT_SIZE[1],
    padding: float = DEFAULT_PADDING,
    pixel_std: float = PIXEL_STD,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert COCO boxes to mmpose ``(center, scale)`` (``_xywh2cs`` without the training-time jitter).

    The box is grown along its shorter side to ``aspect_ratio = w / h`` of the network input, divided by
    ``pixel_std`` and multiplied by ``padding``.

    Args:
        box_xywh: ``[4]`` or ``[N, 4]`` boxes ``(x, y, w, h)`` in pixels (extra trailing columns are ignored).
        aspect_ratio: crop width / height, e.g. ``192 / 256``.
        padding: context factor (1.25 in mmpose / transformers).
        pixel_std: the mmpose normalisation constant (200).

    Returns:
        ``center`` ``[2]`` / ``[N, 2]`` float32 pixels and ``scale`` ``[2]`` / ``[N, 2]`` float32 in pixel_std units.
    """
    boxes = np.asarray(box_xywh, dtype=np.float64)
    if boxes.ndim not in (1, 2) or boxes.shape[-1] < 4:
        raise ValueError(f"box_xywh must have shape [4] or [N, 4], got {boxes.shape}")
    if aspect_ratio <= 0:
        raise ValueError(f"aspect_ratio must be > 0, got {aspect_ratio}")
    x, y, w, h = (boxes[..., i] for i in range(4))
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    # Grow the shorter side (relative to the target aspect ratio); equal aspect leaves both unchanged.
    wider = w > aspect_ratio * h
    new_w = np.where(wider, w, h * aspect_ratio)
    new_h = np.where(wider, w / aspect_ratio, h)
    scale = np.stack([new_w, new_h], axis=-1) / pixel_std * padding
    return center.astype(np.float32), scale.astype(np.float32)


def center_scale_to_box(
    center: Sequence[float] | np.ndarray,
    scale: Sequence[float] | np.ndarray,
    padding: float = DEFAULT_PADDING,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """Inverse-ish of :func:`box_to_center_scale`: the aspect-corrected box ``(x, y, w, h)``.

    The original box's aspect ratio is lost (the shorter side was grown), so this returns the box the crop was
    built from *after* aspect correction; ``padding=1.0`` gives the full ROI that the crop covers.

    Args:
        center: ``[2]`` or ``[N, 2]`` pixels.
        scale: ``[2]`` or ``[N, 2]`` pixel_std units.

    Returns:
        ``[4]`` or ``[N, 4]`` float32 boxes.
    """
    c = np.asarray(center, dtype=np.float64)
    wh = np.asarray(scale, dtype=np.float64) * pixel_std / padding
    return np.concatenate([c - wh * 0.5, wh], axis=-1).astype(np.float32)


def sanitize_box_xywh(
    box_xywh: Sequence[float] | np.ndarray, image_width: int, image_height: int
) -> np.ndarray | None:
    """mmpose's GT box cleaning: clip to the image; ``None`` when nothing is left.

    ``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w - 1))`` (same for y); valid when ``x2 > x1`` and ``y2 > y1``.
    Returns ``[4]`` float32 ``(x1, y1, x2 - x1, y2 - y1)``.
    """
    x, y, w, h = (float(v) for v in np.asarray(box_xywh, dtype=np.float64).reshape(-1)[:4])
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(image_width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(image_height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 <= x1 or y2 <= y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


def mpii_center_scale(center: Sequence[float], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MPII annotation (1-based ``center``, single ``scale`` s) -> 0-based mmpose ``(center, scale)``.

    mmpose's MPII loader: if ``center_x != -1``: ``center_y += 15 s`` and ``s *= 1.25``; then ``center -= 1`` and
    ``scale = [s, s]`` (square, no aspect correction; the UDP warp scales x and y independently).
    """
    c = np.asarray(center, dtype=np.float64).reshape(-1)[:2].copy()
    s = float(scale)
    if c[0] != -1:
        c[1] += 15.0 * s
        s *= 1.25
    c -= 1.0
    return c.astype(np.float32), np.array([s, s], dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------
# Affine matrices
# --------------------------------------------------------------------------------------------------------------


def _pairs(value: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """Return ``value`` as float64 ``[..., 2]`` or raise a ValueError naming ``name``."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must have shape [2] or [N, 2], got {arr.shape}")
    return arr


def get_udp_warp_matrix(
    center: Sequence[float] | np.ndarray,
    scale_px: Sequence[float] | np.ndarray,
    rotation_deg: float | np.ndarray,
    output_size: Sequence[int],
) -> np.ndarray:
    """Unbiased (UDP, Huang et al. CVPR 2020) crop matrix, as mmpose ``get_warp_matrix(r, 2c, size - 1, s*200)``.

    Maps ``center`` to ``((W - 1) / 2, (H - 1) / 2)`` with independent scales ``sx = (W - 1) / scale_px[0]`` and
    ``sy = (H - 1) / scale_px[1]`` and rotation ``rotation_deg`` (mmpose sign convention). Batched when ``center``
    / ``scale_px`` are ``[N, 2]`` (and ``rotation_deg`` a scalar or ``[N]``).

    Args:
        center: ``(x, y)`` ROI centre in image pixels, ``[2]`` or ``[N, 2]``.
        scale_px: ``(w, h)`` ROI size in pixels (``scale * 200``), ``[2]`` or ``[N, 2]``.
        rotation_deg: rotation in degrees, scalar or ``[N]``.
        output_size: crop ``(W, H)``, e.g. ``(192, 256)``.

    Returns:
        ``[2, 3]`` (or ``[N, 2, 3]``) float64 image -> crop matrix.
    """
    c = _pairs(center, "center")
    roi = _pairs(scale_px, "scale_px")
    if np.any(roi <= 0):
        raise ValueError(f"scale_px must be positive, got {roi.tolist()}")
    out_w, out_h = _check_size(output_size)
    theta = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    cx, cy, rw, rh = c[..., 0], c[..., 1], roi[..., 0], roi[..., 1]
    sx, sy = (out_w - 1.0) / rw, (out_h - 1.0) / rh
    # mmpose passes size_input = 2 * center, so its "0.5 * size_input" is the centre itself.
    row0 = [cos_t * sx, -sin_t * sx, sx * (-cx * cos_t + cy * sin_t + 0.5 * rw)]
    row1 = [sin_t * sy, cos_t * sy, sy * (-cx * sin_t - cy * cos_t + 0.5 * rh)]
    rows = [np.stack(np.broadcast_arrays(*row), axis=-1) for row in (row0, row1)]
    return np.stack(rows, axis=-2)


def get_affine_matrix(
    center: Sequence[float] | np.ndarray,
    scale_px: Sequence[float] | np.ndarray,
    rotation_deg: float | np.ndarray,
    output_size: Sequence[int],
    shift: Sequence[float] = (0.0, 0.0),
) -> np.ndarray:
    """Classic (non-UDP) crop matrix, closed form of mmpose ``get_affine_transform(c, s, r, size)``.

    mmpose builds it from three point pairs (centre, a point half a ROI-width "above" the centre rotated by
    ``r``, and a third point at 90 degrees). That is a similarity: uniform scale ``W / scale_px[0]`` (only the
    ROI *width* matters), rotation by ``-r`` in image coordinates, and ``center + shift * scale_px`` mapped to
    ``(W / 2, H / 2)``. Tests check it against ``cv2.getAffineTransform`` on the three points. Batched like
    :func:`get_udp_warp_matrix`.

    Returns:
        ``[2, 3]`` (or ``[N, 2, 3]``) float64 image -> crop matrix.
    """
    roi = _pairs(scale_px, "scale_px")
    c = _pairs(center, "center") + _pairs(shift, "shift") * roi
    if np.any(roi[..., 0] <= 0):
        raise ValueError(f"scale_px width must be positive, got {roi.tolist()}")
    out_w, out_h = _check_size(output_size)
    s = out_w / roi[..., 0]
    theta = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
    a, b = s * np.cos(theta), s * np.sin(theta)
    cx, cy = c[..., 0], c[..., 1]
    row0 = [a, b, out_w * 0.5 - (a * cx + b * cy)]
    row1 = [-b, a, out_h * 0.5 - (-b * cx + a * cy)]
    rows = [np.stack(np.broadcast_arrays(*row), axis=-1) for row in (row0, row1)]
    return np.stack(rows, axis=-2)


def horizontal_flip_matrix(image_width: int) -> np.ndarray:
    """``[2, 3]`` matrix of the mmpose horizontal flip ``x -> image_width - 1 - x``."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``[2, 3]`` matrix of ``p -> outer(inner(p))``."""
    o = np.asarray(outer, dtype=np.float64)
    i = np.asarray(inner, dtype=np.float64)
    return np.concatenate([o[:, :2] @ i[:, :2], (o[:, :2] @ i[:, 2] + o[:, 2])[:, None]], axis=1)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``[2, 3]`` (or batched ``[N, 2, 3]``) affine matrix; raises ValueError when singular."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (2, 3):
        raise ValueError(f"affine matrix must have shape [..., 2, 3], got {m.shape}")
    linear = m[..., :2]
    det = np.linalg.det(linear)
    if np.any(np.abs(det) < 1e-12):
        raise ValueError("affine matrix is singular and cannot be inverted")
    inv_linear = np.linalg.inv(linear)
    inv_t = -np.einsum("...ij,...j->...i", inv_linear, m[..., 2])
    return np.concatenate([inv_linear, inv_t[..., None]], axis=-1)


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply ``[2, 3]`` (or ``[N, 2, 3]`` to ``[N, ..., 2]``) affine matrices to points.

    Args:
        points: ``[..., 2]`` (single matrix) or ``[N, ..., 2]`` (batched matrices) ``(x, y)``.
        matrix: ``[2, 3]`` or ``[N, 2, 3]``.

    Returns:
        Transformed points, same shape as ``points``, float64 (float32 inputs stay float32).
    """
    pts = np.asarray(points)
    m = np.asarray(matrix, dtype=np.float64)
    if pts.shape[-1] != 2:
        raise ValueError(f"points must have shape [..., 2], got {pts.shape}")
    out_dtype = np.float32 if pts.dtype == np.float32 else np.float64
    p = pts.astype(np.float64)
    if m.ndim == 2:
        out = p @ m[:, :2].T + m[:, 2]
    elif m.ndim == 3:
        if p.shape[0] != m.shape[0]:
            raise ValueError(f"batched points {p.shape} and matrices {m.shape} disagree on N")
        flat = p.reshape(p.shape[0], -1, 2)
        out = (np.einsum("nij,npj->npi", m[:, :, :2], flat) + m[:, None, :, 2]).reshape(p.shape)
    else:
        raise ValueError(f"matrix must have shape [2, 3] or [N, 2, 3], got {m.shape}")
    return out.astype(out_dtype)


# --------------------------------------------------------------------------------------------------------------
# Image warps
# --------------------------------------------------------------------------------------------------------------


def warp_crop(image_hwc: np.ndarray, matrix: np.ndarray, output_size: Sequence[int],
              out: np.ndarray | None = None) -> np.ndarray:
    """Crop/warp an image with ``cv2.warpAffine`` (bilinear, constant-0 border), as mmpose ``TopDownAffine``.

    Args:
        image_hwc: ``[H, W, C]`` (or ``[H, W]``) image, typically uint8 RGB.
        matrix: ``[2, 3]`` image -> crop matrix.
        output_size: crop ``(W, H)``.
        out: optional ``[out_H, out_W, C]`` array of the image's dtype to write into (e.g. a slice of a batch).

    Returns:
        ``[out_H, out_W, C]`` array of the input dtype.
    """
    out_w, out_h = _check_size(output_size)
    img = np.asarray(image_hwc)
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image must have shape [H, W] or [H, W, C], got {img.shape}")
    if not img.flags.c_contiguous:  # cv2 refuses negative strides (e.g. an img[:, ::-1] view)
        img = np.ascontiguousarray(img)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"matrix must have shape [2, 3], got {m.shape}")
    if out is not None and (out.shape[:2] != (out_h, out_w) or out.dtype != img.dtype or not out.flags.c_contiguous
                            or out.shape[2:] != img.shape[2:]):
        raise ValueError(f"out must be a contiguous {img.dtype} array of shape {(out_h, out_w, *img.shape[2:])}, "
                         f"got {out.dtype} {out.shape}")
    warped = cv2.warpAffine(
        img, m, (out_w, out_h), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    if img.ndim == 3 and warped.ndim == 2:  # cv2 drops a singleton channel axis
        warped = warped[..., None]
    return warped
