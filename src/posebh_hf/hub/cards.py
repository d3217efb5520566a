"""Model and prototype-pack cards, rendered from the Jinja templates in `hub_cards/` with huggingface_hub's
`ModelCard.from_template` (the YAML header comes from `ModelCardData`).

The templates ship inside the package (`posebh_hf/hub_cards/`, package data read with `importlib.resources`), so a
wheel renders the same cards as a checkout; `POSEBH_HUB_CARDS=/path/to/folder` uses your own templates instead. A
short built-in card remains the last resort, so exporting never fails for want of a template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCard, ModelCardData

from ..templates import card_template

if TYPE_CHECKING:
    from ..configuration_posebh import PoseBHConfig
    from .pack import PrototypePack

__all__ = ["HUB_URL", "ResultRow", "find_template", "render_model_card", "render_pack_card"]

HUB_URL = "https://huggingface.co"
_FALLBACK = {
    "pack_card.md": "---\n{{ card_data }}\n---\n\n# PoseBH prototype pack: `{{ skeleton_name }}`\n\n"
                    "K={{ num_keypoints }}, M={{ num_prototypes }}, D={{ embed_dim }}, similarity `{{ similarity }}`, "
                    "expert {{ dataset_index }}, base model {{ base_model }}.\n\n{{ learned_description }}\n",
    "model_card.md": "---\n{{ card_data }}\n---\n\n# {{ title }}\n\n{{ description }}\n\n"
                     "Load with `import posebh_hf; AutoModel.from_pretrained(\"{{ repo_id }}\")`.\n",
}


@dataclass(frozen=True)
class ResultRow:
    """One line of a results table."""

    dataset: str
    split: str
    metric: str
    value: str


def find_template(name: str) -> Path | None:
    """`hub_cards/<name>` from $POSEBH_HUB_CARDS or the package data; None when neither has it."""
    return card_template(name)


def _render(template_name: str, card_data: ModelCardData, values: Mapping[str, Any]) -> str:
    path = find_template(template_name)
    if path is not None:
        card = ModelCard.from_template(card_data, template_path=str(path), **values)
    else:
        card = ModelCard.from_template(card_data, template_str=_FALLBACK[template_name], **values)
    return str(card).rstrip() + "\n"


def _version() -> str:
    from ..version import __version__

    return __version__


def render_pack_card(pack: PrototypePack, repo_id: str | None = None) -> str:
    """README.md of a prototype pack. `repo_id` is the pack's Hub id when known (used in the usage snippet)."""
    learned = dict(pack.learned)
    description = learned.get("description") or learned.get("method") or "Not recorded."
    extra = {k: v for k, v in learned.items() if k not in ("description",)}
    if extra:
        description += "\n\n" + "\n".join(f"- {k}: {v}" for k, v in sorted(extra.items()))
    base_is_repo = bool(pack.base_model) and len(str(pack.base_model).split("/")) == 2 \
        and not Path(str(pack.base_model)).exists()
    card_data = ModelCardData(
        library_name="posebh_hf",
        tags=["posebh", "keypoint-prototypes", "pose-estimation", pack.name],
        base_model=pack.base_model if base_is_repo else None,
        # the Hub lists the pack under its base model as an adapter (like a LoRA)
        base_model_relation="adapter" if base_is_repo else None,
    )
    values = {
        "skeleton_name": pack.name, "num_keypoints": pack.num_keypoints, "num_prototypes": pack.num_prototypes,
        "embed_dim": pack.embed_dim, "similarity": pack.similarity, "dataset_index": pack.dataset_index,
        "base_model": pack.base_model if base_is_repo else None,
        "base_model_url": f"{HUB_URL}/{pack.base_model}" if base_is_repo else "",
        "base_revision": pack.base_revision, "embedding_fingerprint": pack.embedding_fingerprint,
        "format_version": pack.format_version, "keypoint_names": list(pack.skeleton.keypoint_names),
        "learned_description": description, "repo_id": repo_id or f"ORG/{pack.name}-prototypes",
        "posebh_version": _version(),
    }
    return _render("pack_card.md", card_data, values)


def render_model_card(
    config: PoseBHConfig,
    *,
    repo_id: str,
    title: str | None = None,
    description: str = "",
    license: str = "other",
    license_note: str | None = None,
    base_model: str | None = None,
    reported_results: Sequence[ResultRow] = (),
    reported_source: str = "",
    measured_results: Sequence[ResultRow] = (),
    measured_source: str = "",
    packs: Mapping[str, str] | None = None,
    remote_code: bool = False,
    provenance: str = "",
    datasets: Sequence[str] | None = None,
) -> str:
    """README.md of a PoseBH model repo.

    `reported_results` are the authors' published numbers (rendered under "Results reported by the authors");
    `measured_results` are numbers measured with this package (rendered under "Our measurements"). The two are never
    mixed.
    """
    image_h, image_w = (int(v) for v in _pair(config.backbone_config.image_size))
    metrics = sorted({row.metric for row in [*reported_results, *measured_results]})
    card_data = ModelCardData(
        library_name="posebh_hf",
        pipeline_tag="keypoint-detection",
        license=license,
        tags=["posebh", "pose-estimation", "keypoint-detection", "vitpose", "multi-dataset"],
        datasets=list(datasets if datasets is not None else config.dataset_names),
        metrics=metrics or None,
        base_model=base_model,
    )
    heads = [{"index": i, "name": name, "num_keypoints": k}
             for i, (name, k) in enumerate(zip(config.dataset_names, config.num_keypoints, strict=True))]
    values = {
        "title": title or f"PoseBH: {repo_id.split('/')[-1]}",
        "description": description,
        "repo_id": repo_id, "repo_name": repo_id.split("/")[-1], "hub_url": HUB_URL,
        "image_height": image_h, "image_width": image_w, "heatmap_height": image_h // 4,
        "heatmap_width": image_w // 4, "first_dataset": config.dataset_names[0], "heads": heads,
        "num_prototypes": config.num_prototypes, "embed_dim": config.embed_dim, "similarity": config.similarity,
        "packs": dict(packs or {}), "remote_code": remote_code,
        "reported_results": list(reported_results), "reported_source": reported_source,
        "measured_results": list(measured_results), "measured_source": measured_source,
        "provenance": provenance or "Not recorded.",
        "license_note": license_note or f"`{license}`.",
        "posebh_version": _version(),
    }
    return _render("model_card.md", card_data, values)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])
