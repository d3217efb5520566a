"""ops.similarity: prototype similarity and heatmaps against a per-pixel loop reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from posebh_hf.ops import HEATMAP_CLAMP, prototype_heatmaps, prototype_logits, prototype_similarity


def _reference_heatmaps(emb: torch.Tensor, protos: torch.Tensor, mode: str) -> torch.Tensor:
    """Pixel by pixel with F.cosine_similarity (independent of the einsum implementation)."""
    b, _, h, w = emb.shape
    k, m, _ = protos.shape
    out = torch.empty(b, k, h, w, dtype=torch.float64)
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                e = emb[bi, :, y, x].double()
                cos = F.cosine_similarity(e[None, None], protos.double(), dim=-1)  # [K, M]
                cos = cos.abs() if mode == "abs_cosine" else cos
                out[bi, :, y, x] = cos.amax(dim=1).clamp(*HEATMAP_CLAMP)
    return out


@pytest.mark.parametrize("mode", ["abs_cosine", "cosine"])
def test_heatmaps_match_loop_reference(mode):
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 8, 3, 4, generator=g)
    protos = torch.randn(5, 3, 8, generator=g) * 3.0  # not normalised: the function normalises
    heat = prototype_heatmaps(emb, protos, mode)
    assert heat.shape == (2, 5, 3, 4) and heat.dtype == torch.float32
    torch.testing.assert_close(heat.double(), _reference_heatmaps(emb, protos, mode), atol=1e-6, rtol=0)
    lo, hi = (torch.tensor(v, dtype=torch.float32) for v in HEATMAP_CLAMP)
    assert bool(heat.min() >= lo) and bool(heat.max() <= hi)


def test_abs_and_cosine_differ_on_anti_aligned_pixels():
    protos = F.normalize(torch.randn(1, 2, 4), dim=-1)
    emb = (-protos[0, 0]).view(1, 4, 1, 1)  # exactly opposite to prototype (0, 0)
    assert float(prototype_heatmaps(emb, protos, "abs_cosine")) == pytest.approx(1 - 1e-4)
    assert float(prototype_heatmaps(emb, protos, "cosine")) < 0.999  # cosine -1 is not a match


def test_similarity_shapes_dtype_and_gradient():
    emb = torch.randn(6, 4, dtype=torch.bfloat16, requires_grad=True)
    protos = torch.randn(3, 2, 4)
    before = protos.clone()
    sim = prototype_similarity(emb, protos)
    assert sim.shape == (6, 3, 2) and sim.dtype == torch.float32
    logits = prototype_logits(emb, protos)
    torch.testing.assert_close(logits[:, 1 * 2 + 1], sim[:, 1, 1])  # column k*M + m
    logits.sum().backward()
    assert emb.grad is not None and torch.equal(protos, before)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown similarity"):
        prototype_heatmaps(torch.randn(1, 4, 2, 2), torch.randn(3, 2, 4), "relu")
    with pytest.raises(ValueError, match="D=4 but prototypes have D=5"):
        prototype_heatmaps(torch.randn(1, 4, 2, 2), torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        prototype_similarity(torch.randn(1, 4, 2, 2), torch.randn(3, 2, 4))
