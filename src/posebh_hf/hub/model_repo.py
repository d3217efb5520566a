"""PoseBH model repos: `save_pretrained` + a model card from `src/posebh_hf/hub_cards/` (+ optional standalone remote code), and
pushing them to the Hub.

`from_pretrained` needs nothing from here: after `import posebh_hf`, `AutoModel.from_pretrained("org/name",
revision=...)` resolves `model_type="posebh"`; with `remote_code=True` at push time the repo also loads with
`trust_remote_code=True` and no posebh_hf installed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..modeling import PoseBHForPoseEstimation, load_model_folder, save_model_folder
from .cards import ResultRow, render_model_card
from .download import check_repo_id, push_folder
from .remote_code import write_remote_code

__all__ = ["load_model", "push_model_to_hub", "save_model_repo"]


def save_model_repo(
    model: PoseBHForPoseEstimation,
    folder: str | os.PathLike[str],
    *,
    repo_id: str,
    remote_code: bool = False,
    reported_results: Sequence[ResultRow] = (),
    measured_results: Sequence[ResultRow] = (),
    packs: Mapping[str, str] | None = None,
    **card_kwargs: Any,
) -> Path:
    """Write the exact content of a model repo into `folder`: config.json, model.safetensors, README.md (and
    configuration_posebh.py, modeling_posebh.py, the posebh_*.py modules they import, and `auto_map` when
    `remote_code`). Returns the folder."""
    check_repo_id(repo_id)
    card = render_model_card(model.config, repo_id=repo_id, remote_code=remote_code,
                             reported_results=reported_results, measured_results=measured_results, packs=packs,
                             **card_kwargs)
    # the project's one model-folder writer: whole or nothing; an existing repo folder is replaced once complete
    return save_model_folder(model, Path(folder), overwrite=True, card=card,
                             extra=write_remote_code if remote_code else None)


def push_model_to_hub(
    model: PoseBHForPoseEstimation,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    **repo_kwargs: Any,
) -> str:
    """Create `repo_id` if needed and upload the model repo written by `save_model_repo`. Returns the commit id."""
    with tempfile.TemporaryDirectory(prefix="posebh-model-") as tmp:
        save_model_repo(model, tmp, repo_id=repo_id, **repo_kwargs)
        return push_folder(tmp, repo_id, revision=revision, private=private, token=token, endpoint=endpoint,
                           commit_message=commit_message or "Upload PoseBH model")


def load_model(path_or_repo: str | os.PathLike[str], *, revision: str | None = None) -> PoseBHForPoseEstimation:
    """A PoseBH model from a local `save_pretrained` folder or a Hub repo id (`org/name`, optionally at `revision`),
    in eval mode. A folder that is not a PoseBH model is refused with a one-line reason."""
    path = Path(path_or_repo).expanduser()
    if path.is_dir():
        return load_model_folder(path)
    if path.suffix in (".json", ".safetensors", ".pth") or len(str(path_or_repo).split("/")) != 2:
        raise ValueError(f"model {str(path_or_repo)!r} is neither an existing folder nor a Hub repo id 'ORG/NAME'")
    return PoseBHForPoseEstimation.from_pretrained(str(path_or_repo), revision=revision).eval()
