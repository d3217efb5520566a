"""Numpy heatmap decoding (spec 6.4): integer argmax, then UDP/DARK refinement or the classic +-0.25 shift.

Coordinates returned here are in heatmap pixels; :mod:`posebh_hf.codecs.projection` maps them to the image.
The input heatmaps are never modified (mmpose copies them before its in-place blur; so do we).
"""

from __future__ import annotations

import numpy as np

from .blur import gaussian_blur_heatmaps

DECODE_MODES = ("udp", "default")
_EPS_F32 = float(np.finfo(np.float32).eps)


def _check_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    maps = np.asarray(heatmaps)
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must have shape [N, K, H, W], got {maps.shape}")
    if maps.shape[-1] < 2 or maps.shape[-2] < 2:
        raise ValueError(f"heatmaps must be at least 2 x 2, got {maps.shape[-2:]}")
    return maps


def get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer argmax location and value of each heatmap (mmpose ``_get_max_preds``).

    Args:
        heatmaps: ``[N, K, H, W]``.

    Returns:
        ``coords`` ``[N, K, 2]`` float32 ``(x, y)`` (``-1`` where the maximum is <= 0) and ``scores`` ``[N, K]``
        float32 (the maximum).
    """
    maps = _check_heatmaps(heatmaps)
    n, k, _, width = maps.shape
    flat = maps.reshape(n, k, -1)
    idx = np.argmax(flat, axis=-1)
    scores = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0].astype(np.float32)
    coords = np.stack([idx % width, idx // width], axis=-1).astype(np.float32)
    coords[~(scores > 0.0)] = -1.0
    return coords, scores


def refine_dark_udp(coords: np.ndarray, heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """UDP/DARK sub-pixel refinement (mmpose ``post_dark_udp``), one Newton step on the log of the blurred map.

    Blur (``kernel`` x ``kernel``, OpenCV sigma, reflect-101), clip to ``[0.001, 50]``, ``log``, pad 1 px (edge),
    central-difference gradient and Hessian at the integer location, then ``xy -= (Hess + eps I)^-1 grad``.

    Args:
        coords: ``[N, K, 2]`` integer argmax locations (``-1`` entries are left unchanged).
        heatmaps: ``[N, K, H, W]``.
        kernel: odd blur kernel size (11 in PoseBH's configs).

    Returns:
        Refined ``[N, K, 2]`` float32 coordinates in heatmap pixels. Where the Hessian is singular the
        integer location is kept (mmpose would raise).
    """
    maps = _check_heatmaps(heatmaps)
    log_maps = np.log(np.clip(gaussian_blur_heatmaps(maps, kernel), 0.001, 50.0))
    padded = np.pad(log_maps, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    pts = np.asarray(coords, dtype=np.float32)
    valid = np.all(pts >= 0, axis=-1)
    # +1 for the padding; invalid (-1) locations read the padded corner and are discarded below
    x = np.where(valid, pts[..., 0], 0).astype(np.int64) + 1
    y = np.where(valid, pts[..., 1], 0).astype(np.int64) + 1
    n_idx, k_idx = np.indices(valid.shape)

    def at(dx: int, dy: int) -> np.ndarray:
        return padded[n_idx, k_idx, y + dy, x + dx]

    centre = at(0, 0)
    grad_x = 0.5 * (at(1, 0) - at(-1, 0))
    grad_y = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2 * centre + at(-1, 0)
    hyy = at(0, 1) - 2 * centre + at(0, -1)
    hxy = 0.5 * (at(1, 1) - at(1, 0) - at(0, 1) + 2 * centre - at(-1, 0) - at(0, -1) + at(-1, -1))
    step = _newton_step(grad_x, grad_y, hxx, hxy, hyy)
    ok = valid & np.all(np.isfinite(step), axis=-1)
    return np.where(ok[..., None], pts - step, pts).astype(np.float32)


def _newton_step(
    grad_x: np.ndarray, grad_y: np.ndarray, hxx: np.ndarray, hxy: np.ndarray, hyy: np.ndarray
) -> np.ndarray:
    """``(Hess + eps I)^-1 grad`` for symmetric 2 x 2 Hessians, closed form in float64; NaN where singular."""
    a = hxx.astype(np.float64) + _EPS_F32
    d = hyy.astype(np.float64) + _EPS_F32
    b = hxy.astype(np.float64)
    gx, gy = grad_x.astype(np.float64), grad_y.astype(np.float64)
    det = a * d - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_det = np.where(det != 0, 1.0 / det, np.nan)
        return np.stack([(d * gx - b * gy) * inv_det, (a * gy - b * gx) * inv_det], axis=-1)


def refine_quarter_offset(coords: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Classic "default" refinement: move +-0.25 px toward the larger neighbour in x and in y.

    Applied only where ``1 < x < W - 1`` and ``1 < y < H - 1`` (mmpose's condition, so the first interior
    row/column is left unrefined too). The direction is ``sign(h(x+1) - h(x-1))`` (0 when equal).

    Returns:
        ``[N, K, 2]`` float32.
    """
    maps = _check_heatmaps(heatmaps)
    _, _, height, width = maps.shape
    pts = np.asarray(coords, dtype=np.float32)
    px = pts[..., 0].astype(np.int64)
    py = pts[..., 1].astype(np.int64)
    inner = (px > 1) & (px < width - 1) & (py > 1) & (py < height - 1)
    x = np.where(inner, px, 1)
    y = np.where(inner, py, 1)
    n_idx, k_idx = np.indices(inner.shape)
    diff_x = maps[n_idx, k_idx, y, x + 1] - maps[n_idx, k_idx, y, x - 1]
    diff_y = maps[n_idx, k_idx, y + 1, x] - maps[n_idx, k_idx, y - 1, x]
    shift = 0.25 * np.sign(np.stack([diff_x, diff_y], axis=-1)) * inner[..., None]
    return (pts + shift).astype(np.float32)


def decode_heatmaps(
    heatmaps: np.ndarray, mode: str = "udp", kernel: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``[N, K, H, W]`` heatmaps to heatmap-pixel coordinates ``[N, K, 2]`` and scores ``[N, K]``.

    Args:
        heatmaps: ``[N, K, H, W]`` (already flip-averaged if flip test is used).
        mode: ``"udp"`` (argmax + DARK/UDP refinement) or ``"default"`` (argmax + +-0.25 shift).
        kernel: blur kernel for ``"udp"``.

    Returns:
        ``coords`` float32 (``-1`` where the maximum is <= 0) and ``scores`` float32 = the heatmap maximum.
    """
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode must be one of {DECODE_MODES}, got {mode!r}")
    coords, scores = get_max_preds(heatmaps)
    if mode == "udp":
        coords = refine_dark_udp(coords, heatmaps, kernel)
    else:
        coords = refine_quarter_offset(coords, heatmaps)
    return coords, scores
