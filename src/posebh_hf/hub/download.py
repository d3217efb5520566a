"""Fetching pack files from a local folder or a Hub repo, and pushing a folder to the Hub.

`hf_hub_download` rejects local paths (HFValidationError), so everything that accepts "a repo id or a folder"
branches on the path first (hf_notes.md §3). Downloads name their files explicitly: only the safetensors payload and
the JSON config of a pack ever reach the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .pack import CONFIG_FILE, PROTOTYPES_FILE, PackError

__all__ = ["check_repo_id", "fetch_pack_folder", "is_local_folder", "push_folder"]


def is_local_folder(repo_or_folder: str | os.PathLike[str]) -> bool:
    return Path(repo_or_folder).expanduser().is_dir()


def check_repo_id(repo_id: str, *, what: str = "repo id") -> str:
    """New Hub repos always live under a namespace: refuse a bare name early with the form to use."""
    parts = str(repo_id).split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{what} {repo_id!r} must be 'ORG/NAME' (e.g. 'my-org/posebh-vit-b'): the Hub cannot "
                         "create a repo without a namespace, and a local path must be an existing folder")
    return str(repo_id)


def fetch_pack_folder(repo_or_folder: str | os.PathLike[str], *, revision: str | None = None,
                      subfolder: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                      token: str | bool | None = None, endpoint: str | None = None,
                      local_files_only: bool = False) -> Path:
    """The local folder holding a pack's files: the folder itself, or the Hub snapshot after downloading them."""
    if is_local_folder(repo_or_folder):
        folder = Path(repo_or_folder).expanduser()
        return folder / subfolder if subfolder else folder
    repo_id = check_repo_id(str(repo_or_folder), what="prototype pack")
    paths = []
    for filename in (CONFIG_FILE, PROTOTYPES_FILE):
        try:
            paths.append(hf_hub_download(repo_id, filename, subfolder=subfolder, revision=revision,
                                         cache_dir=cache_dir, token=token, endpoint=endpoint,
                                         local_files_only=local_files_only))
        except (RepositoryNotFoundError, RevisionNotFoundError) as err:
            at = f" at revision {revision!r}" if revision else ""
            raise PackError(f"prototype pack {repo_id}{at} not found on the Hub ({type(err).__name__})") from None
        except LocalEntryNotFoundError:  # before its base class EntryNotFoundError
            raise PackError(f"{repo_id}/{filename} is not in the local cache and the Hub cannot be reached "
                            "(offline mode or no network)") from None
        except EntryNotFoundError:
            hint = _unsafe_hint(repo_id, revision, subfolder, token, endpoint) if filename == PROTOTYPES_FILE else ""
            raise PackError(f"{repo_id}: {filename} is missing; it is not a prototype pack{hint}") from None
    return Path(paths[0]).parent


def _unsafe_hint(repo_id: str, revision: str | None, subfolder: str | None, token: str | bool | None,
                 endpoint: str | None) -> str:
    """Name the non-safetensors payload a repo holds instead, when the listing can be fetched."""
    try:
        files = HfApi(endpoint=endpoint, token=token).list_repo_files(repo_id, revision=revision)
    except (HfHubHTTPError, OSError, ValueError):
        return ""
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    payloads = [f for f in files if f.startswith(prefix) and f.rsplit(".", 1)[-1] in ("bin", "pt", "pth", "pkl")]
    if not payloads:
        return ""
    return f" (found {payloads}: only safetensors payloads are loaded, pickles are refused)"


def push_folder(folder: str | os.PathLike[str], repo_id: str, *, revision: str | None = None,
                private: bool | None = None, token: str | bool | None = None, endpoint: str | None = None,
                commit_message: str = "Upload with posebh_hf") -> str:
    """Create `repo_id` (model repo) when missing, create `revision` as a branch when missing, upload `folder`.

    Returns the commit id.
    """
    check_repo_id(repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                             commit_message=commit_message)
    return str(info.oid)
