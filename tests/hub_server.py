"""A small Hub-protocol test double: an in-memory model/dataset hub on 127.0.0.1 for offline tests.

This is NOT a Hub implementation. It answers just enough of the HTTP protocol that `huggingface_hub`'s real
client code (`HfApi.create_repo`, `upload_folder`/`upload_file`/`create_commit`, `create_branch`/`create_tag`,
`list_repo_refs`, `list_repo_tree`, `model_info`, `hf_hub_download`, `snapshot_download`, `ModelCard.load`) and
transformers' `push_to_hub`/`from_pretrained` run against it unchanged (hf_notes.md §3.1). Every uploaded file is
answered `uploadMode: "regular"` so commits carry file contents inline (no LFS/Xet storage); that limits it to
small files, which is all the tests need. No authentication: any token is accepted.

Routes (repo ids must have a namespace, `org/name`, as new Hub repos do):
  POST /api/repos/create                                  {"name", "organization", "type"} -> 200 | 409
  POST /api/validate-yaml                                 -> {}
  POST /api/{type}s/{repo}/preupload/{rev}                -> uploadMode "regular", the current git oid
  POST /api/{type}s/{repo}/commit/{rev}                   NDJSON header/file/deletedFile/deletedFolder lines
  POST /api/{type}s/{repo}/branch/{name}                  {"startingPoint"?}
  POST /api/{type}s/{repo}/tag/{rev}                      {"tag", "message"?}
  GET  /api/{type}s/{repo}[/revision/{rev}]               repo info with sha + siblings
  GET  /api/{type}s/{repo}/refs                           branches + tags
  GET  /api/{type}s/{repo}/tree/{rev}[/{path}]            files and folders (recursive=1 supported)
  HEAD|GET /[datasets/]{repo}/resolve/{rev}/{path}        ETag, X-Repo-Commit, Content-Length headers

Usage: `with FakeHub() as hub: HfApi(endpoint=hub.url).create_repo("org/x")`. `hub.requests` logs (method, path)
so tests can check which calls a client made.

From a shell, to rehearse pushes and downloads offline (state lives in memory and is lost when it stops):

    python -m tests.hub_server --port 8000          # from the repository root; Ctrl-C stops it
    export HF_ENDPOINT=http://127.0.0.1:8000 HF_TOKEN=hf_local_dummy
    posebh data build ... --push-to-hub me/my-pose-data
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as `oid` for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    files: dict[str, bytes]
    parent: str | None
    message: str
    sha: str = ""


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """A branch, a tag or a full commit sha -> its commit (None when unknown)."""
        sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)

    def commit(self, branch: str, files: dict[str, bytes], message: str) -> Commit:
        parent = self.branches.get(branch)
        digest = hashlib.sha1(f"{self.repo_id}\0{parent}\0{message}\0{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        new = Commit(files=dict(files), parent=parent, message=message, sha=digest.hexdigest())
        self.commits[new.sha] = new
        self.branches[branch] = new.sha
        return new


class HubError(Exception):
    """An HTTP error answer: status, the Hub's X-Error-Code, and a message."""

    def __init__(self, status: int, code: str | None, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


class FakeHub:
    """In-memory hub state plus the HTTP server serving it on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "FakeHub is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeHub:
        """Serve on `host`:`port` (0: a free port) in a background thread."""
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ state helpers
    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository {repo_type}/{repo_id} not found")
        return repo

    def create_repo(self, repo_type: str, repo_id: str) -> Repo:
        if repo_type not in REPO_TYPES:
            raise HubError(400, None, f"invalid repo type {repo_type!r}")
        namespace, _, name = repo_id.partition("/")
        if not namespace or not name or "/" in name:
            raise HubError(400, None, f"repo id {repo_id!r} must be 'namespace/name'")
        if (repo_type, repo_id) in self.repos:
            # The Hub's 409 body carries the url: `create_repo(exist_ok=True)` reads it.
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            raise HubError(409, None, f"You already created this {repo_type} repo",
                           {"url": f"{self.url}/{prefix}{repo_id}"})
        repo = Repo(repo_type, repo_id)
        # The real Hub starts every repo with one commit holding .gitattributes.
        repo.commit("main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                    "initial commit")
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of a revision (for assertions in tests)."""
        commit = self.get_repo(repo_type, repo_id).resolve(revision)
        if commit is None:
            raise KeyError(revision)
        return dict(commit.files)


def _split_repo_route(parts: list[str]) -> tuple[str, list[str]]:
    """['org', 'name', 'rest', ...] -> ('org/name', rest)."""
    if len(parts) < 2:
        raise HubError(404, "RepoNotFound", "repo id must be 'namespace/name'")
    return f"{parts[0]}/{parts[1]}", parts[2:]


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read hub.requests instead
        pass

    # ------------------------------------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json", head_only: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qs(split.query)
        self.hub.requests.append((method, split.path))
        body = self._body() if method in ("POST", "PUT", "DELETE") else b""
        try:
            with self.hub.lock:
                self._route(method, path, query, body)
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, json.dumps({"error": err.message, **err.extra}).encode(), headers,
                       head_only=method == "HEAD")

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    # ------------------------------------------------------------------------------------------ routing
    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create_repo(json.loads(body or b"{}"))
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._json({})
        if len(parts) >= 2 and parts[0] == "api" and parts[1].rstrip("s") in REPO_TYPES:
            repo_id, rest = _split_repo_route(parts[2:])
            return self._api(method, parts[1][:-1], repo_id, rest, query, body)
        if method in ("GET", "HEAD"):
            repo_type = "model"
            if parts and parts[0] in ("datasets", "spaces"):
                repo_type, parts = parts[0][:-1], parts[1:]
            repo_id, rest = _split_repo_route(parts)
            if len(rest) >= 2 and rest[0] == "resolve":
                return self._resolve(method, repo_type, repo_id, rest[1], "/".join(rest[2:]))
        raise HubError(404, None, f"no route for {method} {path} in the test hub")

    def _api(self, method: str, repo_type: str, repo_id: str, rest: list[str],
             query: dict[str, list[str]], body: bytes) -> None:
        repo = self.hub.get_repo(repo_type, repo_id)
        head = rest[0] if rest else ""
        if method == "GET" and not rest:
            return self._info(repo, "main")
        if method == "GET" and head == "revision" and len(rest) >= 2:
            return self._info(repo, "/".join(rest[1:]))
        if method == "GET" and head == "refs":
            return self._refs(repo)
        if method == "GET" and head == "tree" and len(rest) >= 2:
            recursive = query.get("recursive", ["0"])[0].lower() in ("1", "true")
            return self._tree(repo, rest[1], "/".join(rest[2:]), recursive)
        if method == "POST" and head == "preupload" and len(rest) >= 2:
            return self._preupload(repo, "/".join(rest[1:]), json.loads(body or b"{}"))
        if method == "POST" and head == "commit" and len(rest) >= 2:
            return self._commit(repo, "/".join(rest[1:]), body)
        if method == "POST" and head == "branch" and len(rest) >= 2:
            return self._branch(repo, "/".join(rest[1:]), json.loads(body or b"{}"))
        if method == "POST" and head == "tag" and len(rest) >= 2:
            return self._tag(repo, "/".join(rest[1:]), json.loads(body or b"{}"))
        raise HubError(404, None, f"no route for {method} /api/{repo_type}s/{repo_id}/{'/'.join(rest)}")

    # ------------------------------------------------------------------------------------------ handlers
    def _create_repo(self, payload: dict[str, Any]) -> None:
        name, org = payload.get("name") or "", payload.get("organization")
        repo_id = f"{org}/{name}" if org else name
        repo_type = payload.get("type") or "model"
        self.hub.create_repo(repo_type, repo_id)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        self._json({"url": f"{self.hub.url}/{prefix}{repo_id}", "name": repo_id})

    def _commit_or_404(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _info(self, repo: Repo, revision: str) -> None:
        commit = self._commit_or_404(repo, revision)
        self._json({
            "id": repo.repo_id, "modelId": repo.repo_id, "sha": commit.sha, "private": False,
            "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(commit.files.items())],
            "tags": [], "downloads": 0, "likes": 0,
        })

    def _refs(self, repo: Repo) -> None:
        def refs(kind: str, table: dict[str, str]) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(table.items())]

        self._json({"branches": refs("heads", repo.branches), "tags": refs("tags", repo.tags), "converts": []})

    def _tree(self, repo: Repo, revision: str, folder: str, recursive: bool) -> None:
        commit = self._commit_or_404(repo, revision)
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, data in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix):].split("/")
            if len(rel) > 1 and not recursive:
                sub = prefix + rel[0]
                entries[sub] = {"type": "directory", "path": sub, "oid": git_blob_oid(sub.encode())}
                continue
            for depth in range(1, len(rel)):  # parent folders of a nested file in recursive listings
                sub = prefix + "/".join(rel[:depth])
                entries[sub] = {"type": "directory", "path": sub, "oid": git_blob_oid(sub.encode())}
            entries[path] = {"type": "file", "path": path, "size": len(data), "oid": git_blob_oid(data)}
        if folder and not entries:
            raise HubError(404, "EntryNotFound", f"{folder} does not exist at {revision}")
        self._json(list(entries.values()))

    def _preupload(self, repo: Repo, revision: str, payload: dict[str, Any]) -> None:
        commit = self._commit_or_404(repo, revision)
        files = []
        for item in payload.get("files", []):
            existing = commit.files.get(item["path"])
            files.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                          "oid": git_blob_oid(existing) if existing is not None else None})
        self._json({"files": files, "commitOid": commit.sha})

    def _commit(self, repo: Repo, revision: str, body: bytes) -> None:
        if revision not in repo.branches:
            raise HubError(404, "RevisionNotFound", f"cannot commit to {revision!r}: not a branch")
        files = dict(repo.resolve(revision).files)  # type: ignore[union-attr]
        summary = "commit"
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary") or summary
                parent = value.get("parentCommit")
                if parent and parent != repo.branches[revision]:
                    raise HubError(412, None, f"parent commit {parent} is not the head of {revision}")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(folder)}
            else:  # lfsFile: this double never asks for LFS uploads, so a client sending one is a bug
                raise HubError(400, None, f"the test hub does not support commit operation {key!r}")
        new = repo.commit(revision, files, summary)
        self._json({"commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{new.sha}", "commitOid": new.sha,
                    "pullRequestUrl": None, "success": True})

    def _branch(self, repo: Repo, name: str, payload: dict[str, Any]) -> None:
        if name in repo.branches:
            raise HubError(409, None, f"branch {name!r} already exists")
        start = self._commit_or_404(repo, payload.get("startingPoint") or "main")
        repo.branches[name] = start.sha
        self._json({})

    def _tag(self, repo: Repo, revision: str, payload: dict[str, Any]) -> None:
        tag = payload.get("tag") or ""
        if not tag or tag in repo.tags:
            raise HubError(409, None, f"tag {tag!r} is empty or exists")
        repo.tags[tag] = self._commit_or_404(repo, revision).sha
        self._json({})

    def _resolve(self, method: str, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self.hub.get_repo(repo_type, repo_id)
        commit = self._commit_or_404(repo, revision)
        data = commit.files.get(path)
        if data is None:
            err = HubError(404, "EntryNotFound", f"{path} does not exist at {revision}")
            self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Error-Message": err.message,
                                  "X-Repo-Commit": commit.sha}, head_only=method == "HEAD")
            return
        headers = {"ETag": f'"{git_blob_oid(data)}"', "X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
        range_header = self.headers.get("Range")
        if method == "GET" and range_header and range_header.startswith("bytes="):
            start_text, _, stop_text = range_header[len("bytes="):].partition("-")
            start = int(start_text or 0)
            stop = int(stop_text) + 1 if stop_text else len(data)
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
            return self._send(206, data[start:stop], headers, "application/octet-stream")
        self._send(200, data, headers, "application/octet-stream", head_only=method == "HEAD")


# ---------------------------------------------------------------------------------------------- pytest fixtures
# tests/conftest.py belongs to the lead, so the fixtures live here. A test module opts in with
#     _fake_hub, _hub_env = hub_fixtures()
# and then takes `fake_hub` / `hub_env` as test arguments.
SRC = Path(__file__).resolve().parents[1] / "src"


def _fake_hub() -> Iterator[FakeHub]:
    """A fresh in-memory test hub on 127.0.0.1 for one test. Use it with `hub_env`: tests/conftest.py sets
    HF_HUB_OFFLINE=1, which makes huggingface_hub refuse every request until `hub_env` lifts it."""
    with FakeHub() as hub:
        yield hub


def _hub_env(fake_hub: FakeHub, monkeypatch: Any, tmp_path: Path) -> dict[str, str]:
    """Point huggingface_hub (this process) and subprocesses (the returned env) at `fake_hub`, online, with an empty
    cache under tmp_path and a dummy token (so no real credentials are ever read or sent)."""
    import huggingface_hub.constants as constants

    home = tmp_path / "hf_home"
    monkeypatch.setattr(constants, "ENDPOINT", fake_hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    env = {"HF_ENDPOINT": fake_hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home), "HF_TOKEN": "hf_test_dummy",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TRANSFORMERS_OFFLINE": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def hub_fixtures() -> tuple[Any, Any]:
    """The `fake_hub` and `hub_env` fixtures, to assign to module globals of a test module."""
    import pytest  # noqa: PLC0415 - the server itself runs without pytest (python -m tests.hub_server)

    return pytest.fixture(name="fake_hub")(_fake_hub), pytest.fixture(name="hub_env")(_hub_env)


def subprocess_env(extra: dict[str, str], *, with_package: bool = True) -> dict[str, str]:
    """Environment for a child Python: PATH + `extra`, plus src/ on PYTHONPATH when the package should import."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0", **extra}
    if with_package:
        env["PYTHONPATH"] = str(SRC)
    return env


PYTHON = sys.executable


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.hub_server [--host 127.0.0.1] [--port 8000]`: serve an empty in-memory test hub until Ctrl-C."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m tests.hub_server", description=(
        "A local, in-memory Hub test double for rehearsing `push_to_hub`/downloads offline. Small files only, no "
        "authentication, nothing is stored on disk."))
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    args = parser.parse_args(argv)
    try:
        hub = FakeHub().start(args.port, args.host)
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    print(f"test hub serving on {hub.url} (in memory; Ctrl-C stops it)\n"
          f"  export HF_ENDPOINT={hub.url} HF_TOKEN=hf_local_dummy", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
