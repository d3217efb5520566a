"""`embedding_head_type="linear"`: a 1x1 conv of the backbone map, centred per image, upsampled x4 (ours; the
embedding in which a new skeleton's prototypes can be fitted, docs/mdt_mini.md section 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from posebh_hf.configuration_posebh import PoseBHConfig
from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.modeling.embedding import LinearEmbeddingHead
from posebh_hf.skeletons import get_skeleton
from posebh_hf.training import build_model, load_train_config

IMAGE = [64, 48]


def _tiny(**kwargs: object) -> PoseBHConfig:
    return PoseBHConfig.tiny(dataset_names=["coco", "ap10k"], num_hidden_layers=1, image_size=IMAGE, **kwargs)


def test_unknown_embedding_head_type_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"embedding_head_type='mlp' is unknown; expected one of \('deconv', 'linear'\)"):
        _tiny(embedding_head_type="mlp")


def test_linear_head_projects_centres_and_upsamples() -> None:
    """[B, C, h, w] -> [B, D, 4h, 4w] on the heatmap grid; a component shared by every pixel of an image (after the
    projection) does not reach the embedding, so cosine similarities compare pixels within the image."""
    torch.manual_seed(0)
    head = LinearEmbeddingHead(8, 5)
    features = torch.randn(2, 8, 4, 3)
    out = head(features)
    assert out.shape == (2, 5, 16, 12)
    shifted = features + torch.randn(2, 8, 1, 1) * 10.0  # a per-image constant
    torch.testing.assert_close(head(shifted), out, rtol=1e-4, atol=1e-4)
    projected = head.proj(features)
    expected = torch.nn.functional.interpolate(projected - projected.mean((2, 3), keepdim=True), scale_factor=4,
                                               mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, expected)


def test_linear_model_forward_save_and_reload(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(_tiny(embedding_head_type="linear", embed_dim=24)).eval()
    assert isinstance(model.embedding_head, LinearEmbeddingHead)
    x = torch.randn(2, 3, *IMAGE)
    with torch.no_grad():
        out = model(x, dataset_index=[0, 1], output_embeddings=True, output_prototype_heatmaps=True)
    assert out.embeddings.shape == (2, 24, 16, 12) == (2, 24, *out.heatmaps["coco"].shape[-2:])
    assert out.prototype_heatmaps["ap10k"].shape == (2, 17, 16, 12)
    model.save_pretrained(tmp_path / "m")
    again = PoseBHForPoseEstimation.from_pretrained(tmp_path / "m").eval()
    assert again.config.embedding_head_type == "linear"
    with torch.no_grad():
        torch.testing.assert_close(again(x, dataset_index=[0, 1], output_embeddings=True).embeddings, out.embeddings)


def test_training_init_keeps_the_source_head_type_unless_overridden(tmp_path: Path) -> None:
    """model.init from a deconv model: `config_overrides` switches to a fresh linear head (the rest is copied);
    from a linear model the linear head and its weights come along."""
    torch.manual_seed(0)
    PoseBHForPoseEstimation(_tiny()).save_pretrained(tmp_path / "deconv")

    def cfg(source: Path, *extra: str) -> object:
        return load_train_config(None, [f"model.init={source}", "data.datasets=[]",
                                        "data.datasets.0={name: coco, train: x.json}",
                                        "data.datasets.1={name: ap10k, train: x.json}", *extra])

    skeletons = {n: get_skeleton(n) for n in ("coco", "ap10k")}
    linear, text = build_model(cfg(tmp_path / "deconv", "model.config_overrides={embedding_head_type: linear}"),
                               skeletons)
    assert linear.config.embedding_head_type == "linear" and "embedding_head.proj" in text
    linear.save_pretrained(tmp_path / "linear")
    again, _ = build_model(cfg(tmp_path / "linear"), skeletons)
    assert again.config.embedding_head_type == "linear"
    torch.testing.assert_close(again.embedding_head.proj.weight, linear.embedding_head.proj.weight)
