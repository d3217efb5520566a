"""Loading a pose dataset by its Hub id: the repo ``posebh data build --push-to-hub`` writes, read back.

The repo holds ``data/<split>-0000i-of-0000n.parquet`` (images embedded), ``posebh.json`` (the build metadata with
the skeleton) and a ``README.md`` card whose YAML carries the same metadata under ``posebh``. Parquet keeps the
``datasets`` features but not ``info.description``, where a locally saved dataset keeps its skeleton, so the
metadata is read from ``posebh.json`` (or, when a repo lacks it, the card) and written back into the loaded
dataset's description: everything that reads a dataset's skeleton from its info works on Hub datasets too.

The files are fetched with ``huggingface_hub.snapshot_download`` (cached, so ``HF_HUB_OFFLINE=1`` works after one
download; ``HF_ENDPOINT`` points it at another Hub, e.g. the local test double ``python -m tests.hub_server``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from ..skeletons import Skeleton, SkeletonError
from .build import SIDECAR
from .features import METADATA_MARKER

__all__ = ["HubDatasetError", "looks_like_hub_id", "load_hub_dataset", "metadata_from_repo_folder"]

CARD_KEY = "posebh"  # the card's YAML key holding the metadata
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.\-]+?)-\d{5}-of-\d{5}\.parquet$")


class HubDatasetError(ValueError):
    """A Hub dataset that cannot be loaded as a pose dataset; the message is one line for the user."""


def looks_like_hub_id(text: str) -> bool:
    """``namespace/name`` (what the Hub accepts for new repos); local paths are checked before this."""
    return bool(_HUB_ID.match(text)) and ".." not in text


def metadata_from_repo_folder(folder: str | Path, where: str) -> dict[str, Any]:
    """The posebh metadata of a downloaded dataset repo: ``posebh.json``, else the card's ``posebh`` YAML entry."""
    folder = Path(folder)
    sidecar = folder / SIDECAR
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise HubDatasetError(f"{where}: {SIDECAR} is not valid JSON ({err})") from None
        if isinstance(meta, Mapping) and "skeleton" in meta:
            return dict(meta)
    readme = folder / "README.md"
    if readme.is_file():
        from huggingface_hub import DatasetCard  # noqa: PLC0415

        try:
            card_meta = DatasetCard.load(readme).data.to_dict().get(CARD_KEY)
        except Exception:  # noqa: BLE001 - a broken card only means "no metadata there"
            card_meta = None
        if isinstance(card_meta, Mapping) and "skeleton" in card_meta:
            return dict(card_meta)
    raise HubDatasetError(f"{where} has no posebh metadata: neither {SIDECAR} nor a '{CARD_KEY}' entry in the "
                          "README.md card (push it with `posebh data build --push-to-hub`, or give the skeleton "
                          "in the training config and load it with `datasets.load_dataset`)")


def _splits(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for path in sorted((folder / "data").glob("*.parquet")):
        match = _SHARD.match(path.name)
        out.setdefault(match.group("split") if match else path.stem, []).append(path)
    return out


def load_hub_dataset(repo_id: str, *, split: str | None = None, revision: str | None = None,
                     token: str | bool | None = None) -> tuple[datasets.Dataset, Skeleton]:
    """A pose dataset pushed with ``posebh data build --push-to-hub`` and its skeleton.

    Args:
        repo_id: ``namespace/name`` of the dataset repo.
        split: which split (default: the one in the metadata, else the only one in the repo).
        revision: branch, tag or commit.
        token: passed to ``huggingface_hub``.
    """
    from huggingface_hub import snapshot_download  # noqa: PLC0415
    from huggingface_hub.errors import (  # noqa: PLC0415
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"Hub dataset {repo_id}" + (f" (revision {revision})" if revision else "")
    try:
        folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, token=token,
                                        allow_patterns=[SIDECAR, "README.md", "data/*.parquet"]))
    except RepositoryNotFoundError:
        raise HubDatasetError(f"{where} does not exist (or is private and no token was given), and there is no "
                              f"local folder {repo_id} either") from None
    except RevisionNotFoundError:
        raise HubDatasetError(f"{where}: no such revision") from None
    except GatedRepoError:
        raise HubDatasetError(f"{where} is gated: accept its conditions on the Hub and log in") from None
    except LocalEntryNotFoundError:
        raise HubDatasetError(f"{where} is not in the local cache and the Hub cannot be reached (offline: "
                              f"HF_HUB_OFFLINE=1, or no network); there is no local folder {repo_id} either") from None
    meta = metadata_from_repo_folder(folder, where)
    splits = _splits(folder)
    if not splits:
        raise HubDatasetError(f"{where} has no parquet files under data/ (not written by `posebh data build "
                              "--push-to-hub`?)")
    if split is None:
        split = meta.get("split") if meta.get("split") in splits else (next(iter(splits)) if len(splits) == 1
                                                                         else None)
        if split is None:
            raise HubDatasetError(f"{where} has the splits {sorted(splits)}; choose one with split=")
    if split not in splits:
        raise HubDatasetError(f"{where} has no split {split!r} (it has {', '.join(sorted(splits))})")
    try:
        skeleton = Skeleton.from_dict(meta["skeleton"], source=f"{where} metadata")
    except SkeletonError as err:
        raise HubDatasetError(str(err)) from None
    dataset = datasets.Dataset.from_parquet([str(p) for p in splits[split]], split=split)
    if not isinstance(dataset, datasets.Dataset):  # pragma: no cover - from_parquet returns one Dataset
        raise HubDatasetError(f"{where}: split {split!r} did not load as one dataset")
    meta = {**meta, "split": split, "hub_repo": repo_id}
    human = f"Pose corpus {repo_id} ({split} split) from the Hub; skeleton {skeleton.name!r}."
    dataset.info.description = f"{human}\n{METADATA_MARKER}{json.dumps(meta, sort_keys=True)}"
    return dataset, skeleton
