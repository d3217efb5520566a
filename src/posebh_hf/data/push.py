"""``--push-to-hub``: upload a built dataset as parquet shards + ``posebh.json`` + a dataset card.

``datasets.Dataset.push_to_hub`` is not used: it needs the Hub's LFS/Xet upload protocol, which no local test
server offers (hf_notes §3.1). Instead the shards are written here (images embedded) and uploaded with
``HfApi.upload_folder``; ``load_dataset(repo_id)`` reads them through the card's ``configs`` entry, and
``load_pose_dataset(repo_id)`` (:mod:`.hub_io`) reads them with the skeleton from ``posebh.json`` (a copy of the
metadata also sits in the card's YAML under ``posebh``). Pushing another split to the same repo keeps the splits
already there (the card lists them all) and replaces that split's old shards.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
from datasets.table import embed_table_storage
from huggingface_hub import DatasetCard, DatasetCardData, HfApi

from ..templates import card_template
from .build import SIDECAR, load_pose_dataset
from .features import metadata_from_description

__all__ = ["export_parquet", "find_card_template", "push_dataset_to_hub", "render_dataset_card"]

MAX_SHARD_BYTES = 500 * 1024 * 1024
_SHARD_PATH = re.compile(r"^data/(?P<split>[A-Za-z0-9_.\-]+?)-\d{5}-of-\d{5}\.parquet$")
_FALLBACK_TEMPLATE = ("---\n{{ card_data }}\n---\n\n# {{ pretty_name }}\n\n{{ source_format }} pose annotations, "
                      "{{ images }} images, {{ instances }} instances, skeleton `{{ skeleton_name }}` "
                      "({{ num_keypoints }} keypoints); see `posebh.json`.\n")


def find_card_template(name: str = "dataset_card.md") -> Path | None:
    """``hub_cards/<name>`` from ``$POSEBH_HUB_CARDS`` or the package data; None when neither has it."""
    return card_template(name)


def render_dataset_card(meta: Mapping[str, Any], *, repo_id: str, split: str, embedded: bool = True,
                        template: str | Path | None = None, splits: list[str] | None = None) -> str:
    """README.md for a dataset repo from the build metadata (``posebh.json`` content); ``splits``: every split in
    the repo (default: just ``split``)."""
    from ..version import __version__

    skeleton = meta["skeleton"]
    summary = meta.get("summary", {})
    card_data = DatasetCardData(
        pretty_name=f"{meta['source_format']} pose ({skeleton['name']}, {len(skeleton['keypoints'])} keypoints)",
        task_categories=["keypoint-detection"],
        tags=["pose-estimation", "keypoints", "posebh", skeleton["name"]],
        license="other",
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*.parquet"}
                                                          for s in (splits or [split])]}],
        posebh={k: meta[k] for k in ("format_version", "source_format", "split", "skeleton") if k in meta},
    )
    values = {
        "pretty_name": card_data.pretty_name, "repo_id": repo_id, "split": split,
        "source_format": meta["source_format"], "skeleton_name": skeleton["name"],
        "num_keypoints": len(skeleton["keypoints"]), "keypoint_names": skeleton["keypoints"],
        "flip_pairs": ", ".join(f"({a}, {b})" for a, b in skeleton.get("flip_pairs", [])),
        "images": summary.get("images", "?"), "instances": summary.get("instances", "?"),
        "instances_with_keypoints": summary.get("instances_with_keypoints", "?"),
        "image_extras": meta.get("image_extras", []), "object_extras": meta.get("object_extras", []),
        "embedded": embedded, "posebh_version": __version__,
    }
    path = Path(template) if template else find_card_template()
    if path is not None:
        card = DatasetCard.from_template(card_data, template_path=str(path), **values)
    else:
        card = DatasetCard.from_template(card_data, template_str=_FALLBACK_TEMPLATE, **values)
    return str(card).rstrip() + "\n"


def export_parquet(dataset: datasets.Dataset, folder: str | Path, split: str,
                   max_shard_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """Write ``data/<split>-0000i-of-0000n.parquet`` under ``folder`` with the image bytes embedded."""
    folder = Path(folder) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, math.ceil((dataset.data.nbytes or 1) / max_shard_bytes))
    paths = []
    for index in range(num_shards):
        shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
        # Linked images (--link-images) are read from disk into the shard; embedded ones are copied as they are.
        shard = shard.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
        path = folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        shard.to_parquet(str(path))
        paths.append(path)
    return paths


def _splits_in_repo(api: HfApi, repo_id: str) -> set[str]:
    """Splits already uploaded to the repo (their shards stay; the card lists them). Empty when unknown."""
    try:
        files = list(api.list_repo_files(repo_id, repo_type="dataset"))
    except (TypeError, OSError, ValueError):  # HfHubHTTPError is an OSError; a mocked API is not iterable
        return set()
    return {m.group("split") for f in files if isinstance(f, str) and (m := _SHARD_PATH.match(f))}


def push_dataset_to_hub(dataset_dir: str | Path, repo_id: str, *, split: str | None = None, private: bool = False,
                        token: str | None = None, api: HfApi | None = None,
                        commit_message: str | None = None) -> str:
    """Upload a dataset saved by ``build_dataset`` to the Hub dataset repo ``repo_id``; returns the commit URL."""
    dataset, _ = load_pose_dataset(dataset_dir)
    meta = metadata_from_description(dataset.info.description)
    sidecar = Path(dataset_dir) / SIDECAR
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    split = split or meta.get("split") or "train"
    meta["split"] = split  # the split the shards are uploaded as (load_pose_dataset's default)
    meta["image_extras"] = [c for c in dataset.column_names
                            if c not in ("image", "image_id", "width", "height", "file_name", "skeleton", "objects")]
    meta["object_extras"] = [k for k in dataset.features["objects"].feature
                             if k not in ("id", "category_id", "bbox", "keypoints", "num_keypoints", "area", "iscrowd")]
    api = api or HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="posebh-push-") as tmp:
        export_parquet(dataset, tmp, split)
        (Path(tmp) / SIDECAR).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        present = _splits_in_repo(api, repo_id)
        (Path(tmp) / "README.md").write_text(
            render_dataset_card(meta, repo_id=repo_id, split=split, splits=sorted(present | {split})),
            encoding="utf-8")
        info = api.upload_folder(folder_path=tmp, repo_id=repo_id, repo_type="dataset",
                                 delete_patterns=[f"data/{split}-*.parquet"],
                                 commit_message=commit_message or f"Add {meta['source_format']} {split} split")
    return str(getattr(info, "commit_url", info))
