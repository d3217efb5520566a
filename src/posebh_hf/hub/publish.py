"""Publishing the released PoseBH checkpoint: convert the official `.pth`, write the model repo (card + remote code)
and one prototype-pack repo per skeleton, and push them (or write the exact repo folders with `dry_run`).

Repos written for `--repo-id ORG/NAME`:
  ORG/NAME                    the model (config.json, model.safetensors, README.md, remote code)
  ORG/NAME-protos-<skeleton>  one prototype pack per skeleton of the model (coco, aic, mpii, ap10k, ...)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversion import load_official_state_dict, official_to_posebh_model
from ..modeling import PoseBHForPoseEstimation
from .attach import export_prototype_pack
from .cards import ResultRow
from .download import check_repo_id, push_folder
from .model_repo import save_model_repo

__all__ = ["AUTHORS_RESULTS", "AUTHORS_SOURCE", "PublishResult", "pack_repo_id", "publish_official",
           "read_measured_results"]

AUTHORS_SOURCE = ("Jeong et al., CVPR 2025, arXiv:2505.17475, and the README of the official repository "
                  "uyoung-jeong/PoseBH; 256x192 input, flip test")

# The authors' published numbers for the released checkpoints (spec §6.6). Never measured by this package.
_SPLITS = (
    ("COCO", "val2017, detected boxes (AP_H 56)", "AP"),
    ("COCO", "test-dev, detected boxes (AP_H 60.9)", "AP"),
    ("AI Challenger", "val, GT boxes", "AP"),
    ("MPII", "val, GT boxes", "PCKh@0.5"),
    ("MPII", "val, GT boxes", "PCKh@0.1"),
    ("AP-10K", "val split 1 (README: 'test'), GT boxes", "AP"),
    ("APT-36K", "authors' own split, GT boxes", "AP"),
    ("COCO-WholeBody", "val v1.0, detected boxes", "whole-body AP"),
    ("OCHuman", "test, GT boxes (COCO head)", "AP"),
)
AUTHORS_RESULTS: dict[str, list[ResultRow]] = {
    variant: [ResultRow(d, s, m, v) for (d, s, m), v in zip(_SPLITS, values, strict=True)]
    for variant, values in {
        "base": ("77.3", "76.6", "32.1", "93.2", "39.3", "75.0", "87.2", "57.9", "83.1"),
        "huge": ("79.5", "78.6", "35.1", "94.2", "42.3", "82.6", "90.6", "62.0", "87.0"),
    }.items()
}

LICENSE_NOTE = ("The official PoseBH repository did not state a licence for its code or weights when this card was "
                "written; its backbone derives from ViTPose (Apache-2.0). Check the authors' terms before using or "
                "redistributing these weights. The card metadata says `other` for that reason.")


@dataclass
class PublishResult:
    """What was written or pushed: {repo id: local folder} and, when pushed, {repo id: commit id}."""

    folders: dict[str, Path] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)
    conversion_summary: str = ""


def pack_repo_id(repo_id: str, skeleton: str) -> str:
    """`ORG/NAME` + skeleton -> `ORG/NAME-protos-<skeleton>` (underscores become dashes: Hub-friendly names)."""
    return f"{check_repo_id(repo_id)}-protos-{skeleton.replace('_', '-')}"


def read_measured_results(path: str | os.PathLike[str]) -> list[ResultRow]:
    """Rows measured with this package, from a JSON list of {dataset, split, metric, value} objects."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read measured results {path}: {err}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path} must hold a JSON list of {{dataset, split, metric, value}} objects")
    out = []
    for i, row in enumerate(rows):
        missing = [k for k in ("dataset", "split", "metric", "value") if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}: entry {i} lacks {missing}")
        out.append(ResultRow(str(row["dataset"]), str(row["split"]), str(row["metric"]), str(row["value"])))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish_official(
    src: str | os.PathLike[str],
    repo_id: str,
    *,
    variant: str = "base",
    dry_run: str | os.PathLike[str] | None = None,
    dataset_names: Sequence[str] | None = None,
    measured_results: Sequence[ResultRow] = (),
    measured_source: str = "",
    remote_code: bool = True,
    license: str = "other",
    private: bool | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> PublishResult:
    """Convert the official checkpoint `src` and publish it as `repo_id` plus one pack repo per skeleton.

    With `dry_run=DIR` nothing is uploaded: the repos are written to `DIR/<org>/<name>/` exactly as they would be
    pushed (packs then have no base revision, since the model commit does not exist yet).
    """
    check_repo_id(repo_id)
    src = Path(src)
    model, report = official_to_posebh_model(load_official_state_dict(src), variant, dataset_names)
    result = PublishResult(conversion_summary=report.config_summary)
    names = model.config.prototype_skeleton_names
    packs = {name: pack_repo_id(repo_id, name) for name in names}
    provenance = (f"Converted with posebh_hf from the official checkpoint `{src.name}` (sha256 `{_sha256(src)}`): "
                  f"{report.config_summary}. Keys were mapped one to one (spec §7.2); nothing was fine-tuned.")
    card = {
        "title": f"PoseBH ViT-{variant[0].upper()}" if variant in AUTHORS_RESULTS else f"PoseBH ({variant})",
        "description": "The released PoseBH multi-dataset model, converted to a transformers-compatible PoseBH "
                       "checkpoint. Heads: " + ", ".join(model.config.dataset_names) + ".",
        "reported_results": AUTHORS_RESULTS.get(variant, []), "reported_source": AUTHORS_SOURCE,
        "measured_results": list(measured_results), "measured_source": measured_source,
        "license": license, "license_note": LICENSE_NOTE if license == "other" else None,
        "provenance": provenance, "packs": packs, "remote_code": remote_code,
    }
    if dry_run is not None:
        _write_repos(model, Path(dry_run), repo_id, packs, card, src, None, result, push=None)
        return result
    with tempfile.TemporaryDirectory(prefix="posebh-publish-") as tmp:
        _write_repos(model, Path(tmp), repo_id, packs, card, src, variant, result,
                     push={"private": private, "token": token, "endpoint": endpoint})
    result.folders.clear()  # staging folders are gone; the commits say what was published
    return result


def _write_repos(model: PoseBHForPoseEstimation, root: Path, repo_id: str, packs: dict[str, str],
                 card: dict[str, Any], src: Path, variant: str | None, result: PublishResult,
                 push: dict[str, Any] | None) -> None:
    """Write the model repo and the pack repos under `root/<org>/<name>`; push each one when `push` is given.

    The model goes first so the packs can record its commit as their base revision.
    """
    model_folder = save_model_repo(model, root / repo_id, repo_id=repo_id, **card)
    result.folders[repo_id] = model_folder
    base_revision = None
    if push is not None:
        base_revision = push_folder(model_folder, repo_id, commit_message=f"Upload PoseBH ({variant}) converted "
                                    f"from {src.name}", **push)
        result.commits[repo_id] = base_revision
    learned = {"method": "posebh-mdt-official",
               "description": "Learned by the authors' PoseBH multi-dataset training (COCO, AIC, MPII, AP-10K, "
                              "APT-36K, COCO-WholeBody; momentum-updated prototypes, paper Sec. 3) and exported "
                              f"unchanged from the official checkpoint `{src.name}`."}
    for name, pack_id in packs.items():
        pack = export_prototype_pack(model, name, base_model=repo_id, base_revision=base_revision, learned=learned)
        folder = pack.save(root / pack_id, repo_id=pack_id)
        result.folders[pack_id] = folder
        if push is not None:
            result.commits[pack_id] = push_folder(folder, pack_id, commit_message=f"Upload PoseBH prototype pack "
                                                  f"{name}", **push)
