"""Starting a new skeleton's prototypes from a frozen embedding: class-mean warm start and the fitted prototypes
(`posebh_hf.losses.prototype_start`, `transfer.prototype_init`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from posebh_hf.losses import class_mean_sums, fit_prototypes, peak_pixels, warm_start_prototypes


def _gaussian(h: int, w: int, row: int, col: int, sigma: float = 1.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.exp(-((ys - row) ** 2 + (xs - col) ** 2) / (2 * sigma**2))


def test_class_mean_sums_weight_unit_embeddings_by_target_and_add_dataset_offsets() -> None:
    """Two datasets (K = 1 and 2): each row sums target-weighted *unit* embeddings of its own pixels only."""
    emb = torch.zeros(2, 3, 2, 2)
    emb[0, 0] = 5.0  # sample 0 (dataset 0): every pixel points along e0, length 5
    emb[1, 1, 0, 0], emb[1, 2, 1, 1] = 2.0, 3.0  # sample 1 (dataset 1): e1 at (0,0), e2 at (1,1)
    targets = torch.zeros(2, 2, 2, 2)
    targets[0, 0, 0, 0], targets[0, 0, 1, 1] = 1.0, 0.5
    targets[1, 0, 0, 0], targets[1, 1, 1, 1] = 0.8, 0.4
    sums = class_mean_sums(emb, targets, torch.tensor([0, 1]), [1, 2], sample_threshold=0.0)
    assert sums.shape == (3, 4)
    torch.testing.assert_close(sums[0], torch.tensor([1.5, 0.0, 0.0, 1.5]))  # unit e0 x (1.0 + 0.5)
    torch.testing.assert_close(sums[1], torch.tensor([0.0, 0.8, 0.0, 0.8]))
    torch.testing.assert_close(sums[2], torch.tensor([0.0, 0.0, 0.4, 0.4]))
    # the threshold drops pixels as the prototype loss does
    high = class_mean_sums(emb, targets, torch.tensor([0, 1]), [1, 2], sample_threshold=0.6)
    assert high[:, -1].tolist() == pytest.approx([1.0, 0.8, 0.0])


def test_warm_start_moves_rows_with_pixels_to_the_mean_and_keeps_slots_apart() -> None:
    bank = F.normalize(torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    sums = torch.zeros(3, 5)
    sums[0] = torch.tensor([2.0, 0.0, 0.0, 0.0, 2.0])  # row 0 mean: e0
    out = warm_start_prototypes(bank, sums, spread=0.1)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 2))
    assert (out[0, :, 0] > 0.9).all() and not torch.allclose(out[0, 0], out[0, 1])  # near e0, still distinct
    torch.testing.assert_close(out[1:], bank[1:])  # rows without pixels keep their prototypes
    torch.testing.assert_close(warm_start_prototypes(bank, sums, spread=0.0)[0],
                               torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"\[K_tot, D \+ 1\]"):
        warm_start_prototypes(bank, torch.zeros(3, 4))


def test_peak_pixels_give_the_flat_argmax_and_visibility() -> None:
    targets = torch.zeros(1, 2, 4, 5)
    targets[0, 0] = _gaussian(4, 5, 2, 3)
    index, visible = peak_pixels(targets)
    assert index.tolist() == [[2 * 5 + 3, 0]] and visible.tolist() == [[True, False]]


def test_fitted_prototypes_find_keypoints_that_the_class_mean_confuses() -> None:
    """Every keypoint pixel shares a strong common direction with the background (so class means light up the whole
    image) plus a weak direction of its own: fitting tells the keypoint from the rest of the image."""
    gen = torch.Generator().manual_seed(0)
    n, k, d, h, w = 8, 2, 8, 6, 5
    emb = torch.zeros(n, d, h, w)
    emb[:, 0] = 1.0  # common direction everywhere
    emb[:, 3:] = 0.05 * torch.randn(n, d - 3, h, w, generator=gen)
    rows = torch.randint(0, h, (n, k), generator=gen)
    cols = torch.randint(0, w, (n, k), generator=gen)
    for i in range(n):
        for j in range(k):
            emb[i, 1 + j, rows[i, j], cols[i, j]] = 0.3
    targets = torch.stack([torch.stack([_gaussian(h, w, int(rows[i, j]), int(cols[i, j])) for j in range(k)])
                           for i in range(n)])
    index, visible = peak_pixels(targets)
    sums = class_mean_sums(emb, targets, torch.zeros(n, dtype=torch.long), [k], sample_threshold=0.9)
    start = warm_start_prototypes(F.normalize(torch.randn(k, 2, d, generator=gen), dim=-1), sums)
    fitted = fit_prototypes(emb, index, visible, start, steps=200)
    assert fitted.shape == (k, 2, d)
    torch.testing.assert_close(fitted.norm(dim=-1), torch.ones(k, 2))

    def hits(protos: torch.Tensor) -> float:
        unit = F.normalize(emb, dim=1)
        sim = torch.einsum("ndhw,kmd->nkmhw", unit, protos).abs().amax(2).flatten(2)
        return float((sim.argmax(-1) == index).float().mean())

    assert hits(fitted) == 1.0 and hits(start) < 1.0
    # nothing visible: the start comes back (normalised)
    torch.testing.assert_close(fit_prototypes(emb, index, torch.zeros_like(visible), start), start)
    with pytest.raises(ValueError, match="fit_prototypes"):
        fit_prototypes(emb, index[:, :1], visible, start)
