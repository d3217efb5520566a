"""The read path against a real third-party Hub server: olah (a Hub mirror, MIT) serving local git repositories
offline (hf_notes.md §3.1). Packs and models are committed to git repos under olah's `mirrors-path`; posebh_hf then
downloads them through huggingface_hub exactly as from the Hub. Skipped when olah is not installed (dev extra)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import free_port

pytest.importorskip("olah", reason="olah (dev extra) is not installed")
if shutil.which("git") is None:
    pytest.skip("git is not installed (olah serves git repositories)", allow_module_level=True)

from transformers import AutoModel  # noqa: E402

import posebh_hf  # noqa: E402,F401  (registers the Auto classes)
from posebh_hf.hub import PrototypePack, attach_prototype_pack, embedding_fingerprint  # noqa: E402
from posebh_hf.hub.model_repo import save_model_repo  # noqa: E402
from posebh_hf.modeling import PoseBHConfig, PoseBHForPoseEstimation  # noqa: E402
from posebh_hf.skeletons import Skeleton  # noqa: E402

OLAH_CLI = Path(sys.executable).with_name("olah-cli")
MOUSE = Skeleton.from_dict({"name": "mouse4", "keypoints": ["snout", "left_ear", "right_ear", "tail_base"]})


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _commit_folder(repo: Path, message: str, tag: str | None = None) -> str:
    if not (repo / ".git").exists():
        _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    if tag:
        _git(repo, "tag", tag)
    return _git(repo, "rev-parse", "HEAD")


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"olah exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/api/models/org/model/revision/main", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"olah did not answer on {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def olah_repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """olah serving two git repos: org/model (a tiny PoseBH model, tag v1 = first commit) and org/mouse-protos."""
    if not OLAH_CLI.exists():
        pytest.skip(f"olah-cli not found next to {sys.executable}")
    root = tmp_path_factory.mktemp("olah")
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny(num_hidden_layers=1)).eval()
    model_repo = root / "mirrors" / "models" / "org" / "model"
    save_model_repo(model, model_repo, repo_id="org/model")
    v1 = _commit_folder(model_repo, "v1", tag="v1")
    changed = _changed_copy(model)
    changed.save_pretrained(model_repo)
    _commit_folder(model_repo, "v2")
    pack = PrototypePack(F.normalize(torch.randn(4, 3, 64), dim=-1), MOUSE, "abs_cosine", 1,
                         embedding_fingerprint(model), base_model="org/model", base_revision=v1)
    pack_repo = root / "mirrors" / "models" / "org" / "mouse-protos"
    pack.save(pack_repo, repo_id="org/mouse-protos")
    _commit_folder(pack_repo, "pack", tag="v1")
    port = free_port()
    config = root / "olah.toml"
    config.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{root / "cache"}"\n'
                      f'mirrors-path = ["{root / "mirrors"}"]\nmirror-netloc = "127.0.0.1:{port}"\n'
                      f'mirror-lfs-netloc = "127.0.0.1:{port}"\n\n[accessibility]\noffline = true\n')
    log = (root / "olah.log").open("w")
    process = subprocess.Popen([str(OLAH_CLI), "-c", str(config), "--log-path", str(root / "logs")], cwd=root,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield {"url": url, "model": model, "changed": changed, "pack": pack, "v1": v1}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _changed_copy(model: PoseBHForPoseEstimation) -> PoseBHForPoseEstimation:
    import copy

    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.heads[0].conv.bias.add_(1.0)
    return changed


@pytest.fixture
def via_olah(olah_repos: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """huggingface_hub in this process pointed at olah, online, with an empty cache."""
    import huggingface_hub.constants as constants

    url = olah_repos["url"]
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_dummy")
    return olah_repos


def test_pack_downloads_from_olah(via_olah: dict):
    pack = via_olah["pack"]
    pulled = PrototypePack.from_pretrained("org/mouse-protos")
    assert torch.equal(pulled.prototypes, pack.prototypes) and pulled.skeleton == MOUSE
    assert pulled.base_revision == via_olah["v1"]
    tagged = PrototypePack.from_pretrained("org/mouse-protos", revision="v1")
    assert torch.equal(tagged.prototypes, pack.prototypes)
    model = PoseBHForPoseEstimation(via_olah["model"].config)
    model.load_state_dict(via_olah["model"].state_dict())
    attach_prototype_pack(model, "org/mouse-protos")
    assert torch.equal(model.keypoint_prototypes.prototypes[model.prototype_rows("mouse4")], pack.prototypes)


def test_model_loads_from_olah_by_branch_and_tag(via_olah: dict):
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        latest = AutoModel.from_pretrained("org/model").eval()
        first = AutoModel.from_pretrained("org/model", revision="v1").eval()
    with torch.no_grad():
        assert torch.equal(first(x, dataset_index=0).heatmaps["coco"],
                           via_olah["model"](x, dataset_index=0).heatmaps["coco"])
        assert torch.equal(latest(x, dataset_index=0).heatmaps["coco"],
                           via_olah["changed"](x, dataset_index=0).heatmaps["coco"])
