"""The Hub-protocol test double (tests/hub_server.py) against huggingface_hub's real client calls."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_server import FakeHub, git_blob_oid, hub_fixtures
from huggingface_hub import HfApi, ModelCard, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

_fake_hub, _hub_env = hub_fixtures()  # the `fake_hub` and `hub_env` fixtures


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "upload"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "README.md").write_text("---\nlicense: mit\nlibrary_name: posebh_hf\n---\n# card\n")
    return folder


def test_git_blob_oid_matches_git():
    # `git hash-object` of "hello\n" is a well-known constant.
    assert git_blob_oid(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_create_upload_download_roundtrip(fake_hub: FakeHub, hub_env: dict[str, str], tmp_path: Path):
    api = HfApi(endpoint=fake_hub.url, token="dummy")
    url = api.create_repo("org/demo")
    assert str(url).endswith("/org/demo")
    commit = api.upload_folder(repo_id="org/demo", folder_path=_folder(tmp_path), commit_message="add files")
    assert sorted(fake_hub.files("org/demo")) == [".gitattributes", "README.md", "a.txt", "sub/b.bin"]
    assert fake_hub.repos[("model", "org/demo")].branches["main"] == commit.oid
    cache = tmp_path / "cache"
    path = hf_hub_download("org/demo", "sub/b.bin", cache_dir=cache, endpoint=fake_hub.url)
    assert Path(path).read_bytes() == bytes(range(256)) * 4
    # the standard cache layout: snapshots/<commit>/<file>, refs/main = commit
    assert Path(path).as_posix().endswith(f"snapshots/{commit.oid}/sub/b.bin")
    snapshot = Path(snapshot_download("org/demo", cache_dir=cache, endpoint=fake_hub.url))
    assert (snapshot / "a.txt").read_text() == "alpha"
    assert [f.path for f in api.list_repo_tree("org/demo", recursive=True)] == [
        ".gitattributes", "README.md", "a.txt", "sub", "sub/b.bin"]
    assert api.model_info("org/demo").sha == commit.oid
    assert ModelCard.load("org/demo", token="dummy").data.library_name == "posebh_hf"


def test_revisions_branches_and_tags(fake_hub: FakeHub, hub_env: dict[str, str], tmp_path: Path):
    api = HfApi(endpoint=fake_hub.url, token="dummy")
    api.create_repo("org/rev")
    api.upload_file(path_or_fileobj=b"v1", path_in_repo="x.txt", repo_id="org/rev")
    api.create_tag("org/rev", tag="v1")
    api.create_branch("org/rev", branch="dev")
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="x.txt", repo_id="org/rev", revision="dev")
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="x.txt", repo_id="org/rev")
    refs = api.list_repo_refs("org/rev")
    assert {b.name for b in refs.branches} == {"main", "dev"} and [t.name for t in refs.tags] == ["v1"]
    cache = tmp_path / "cache"

    def read(revision: str) -> str:
        return Path(hf_hub_download("org/rev", "x.txt", revision=revision, cache_dir=cache,
                                    endpoint=fake_hub.url)).read_text()

    assert (read("v1"), read("dev"), read("main")) == ("v1", "dev", "v2")
    first_commit = refs.tags[0].target_commit
    assert read(first_commit) == "v1"


def test_errors_map_to_huggingface_hub_exceptions(fake_hub: FakeHub, hub_env: dict[str, str], tmp_path: Path):
    api = HfApi(endpoint=fake_hub.url, token="dummy")
    api.create_repo("org/err")
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo("org/err")
    assert info.value.response.status_code == 409
    assert str(api.create_repo("org/err", exist_ok=True)).endswith("/org/err")
    with pytest.raises(HfHubHTTPError) as info:  # new repos need a namespace, as on the Hub
        api.create_repo("bare-name")
    assert info.value.response.status_code == 400
    cache = tmp_path / "c"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "x", cache_dir=cache, endpoint=fake_hub.url)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/err", ".gitattributes", revision="nope", cache_dir=cache, endpoint=fake_hub.url)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/err", "absent.txt", cache_dir=cache, endpoint=fake_hub.url)
    assert api.file_exists("org/err", ".gitattributes") and not api.file_exists("org/err", "absent.txt")


def test_unchanged_upload_is_skipped_and_deletes_work(fake_hub: FakeHub, hub_env: dict[str, str], tmp_path: Path):
    api = HfApi(endpoint=fake_hub.url, token="dummy")
    api.create_repo("org/same")
    folder = _folder(tmp_path)
    first = api.upload_folder(repo_id="org/same", folder_path=folder)
    commits_before = len(fake_hub.repos[("model", "org/same")].commits)
    api.upload_folder(repo_id="org/same", folder_path=folder)  # preupload reports the same oids: no new commit
    assert len(fake_hub.repos[("model", "org/same")].commits) == commits_before
    api.delete_file("sub/b.bin", repo_id="org/same")
    assert "sub/b.bin" not in fake_hub.files("org/same")
    assert "sub/b.bin" in fake_hub.files("org/same", revision=first.oid)


def test_hub_env_points_the_default_client_at_the_double(hub_env: dict[str, str], fake_hub: FakeHub):
    api = HfApi()  # no endpoint given: the patched constants decide
    api.create_repo("org/env")
    path = hf_hub_download("org/env", ".gitattributes")
    assert Path(path).is_file() and path.startswith(hub_env["HF_HOME"])
    assert ("POST", "/api/repos/create") in fake_hub.requests


def test_command_line_server_serves_real_clients(hub_env: dict[str, str], tmp_path: Path):
    """`python -m tests.hub_server --port 0` (the documented way to run it outside pytest) serves until stopped."""
    import subprocess
    import sys

    from hub_server import subprocess_env

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "tests.hub_server", "--port", "0"], cwd=root,
                            env=subprocess_env({}, with_package=False), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "test hub serving on http://127.0.0.1:" in first, proc.stderr.read() if proc.poll() else first
        url = first.split(" on ")[1].split()[0]
        api = HfApi(endpoint=url, token="dummy")
        api.create_repo("org/cli", repo_type="dataset")
        (tmp_path / "x.txt").write_text("x")
        api.upload_file(path_or_fileobj=tmp_path / "x.txt", path_in_repo="x.txt", repo_id="org/cli",
                        repo_type="dataset")
        assert "x.txt" in api.list_repo_files("org/cli", repo_type="dataset")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
