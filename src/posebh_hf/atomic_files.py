"""Files and folders written whole or not at all (layer 0): a temporary beside the target, renamed over it.

A reader (or a crash) never sees a half-written file; a failed write leaves the old file, or none, and no
temporary behind. Temporaries are opened like ordinary files (so they get the usual umask permissions) and keep
the target's suffix, for writers that pick the format from the file name.

Folders (`write_folder_atomically`) are written into ``.<name>.partial-<pid>-<hex>`` beside the target and renamed
into place; a failed write removes its staging folder, and a killed one (whose process is gone) is removed by the
next write to the same target. A full disk or a permission problem becomes one `WriteError` naming the target.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "WriteError",
    "as_write_error",
    "clean_stale_staging",
    "write_atomically",
    "write_folder_atomically",
    "write_json_atomically",
    "write_text_atomically",
]


# failures of the file system itself (as opposed to, say, a missing input file read by the writer)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO,
                 errno.ENAMETOOLONG}


class WriteError(OSError):
    """A write that failed (full disk, no permission, read-only file system...); the message names the path."""

    def __init__(self, path: str | os.PathLike[str], reason: str, code: int | None = None) -> None:
        self.message = f"cannot write {os.fspath(path)}: {reason}"
        super().__init__(self.message)
        self.errno, self.path, self.reason = code, os.fspath(path), reason  # not `filename`: OSError would reformat str() with it

    def __str__(self) -> str:
        return self.message


def _write_failure(path: str | os.PathLike[str], err: BaseException) -> WriteError | None:
    """`err` as a `WriteError` naming `path` when it is a failure of the file system (else None)."""
    if isinstance(err, WriteError):  # raised for a file inside the folder being written: name the folder
        return err if err.path == os.fspath(path) else WriteError(path, err.reason, err.errno)
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        return WriteError(path, os.strerror(err.errno).lower(), err.errno)
    # safetensors reports I/O problems as its own exception type ("I/O error: ... (os error 28)")
    if type(err).__name__ == "SafetensorError":
        found = re.search(r"(?:os error |code: )(\d+)", str(err))
        code = int(found.group(1)) if found else None
        if code in _WRITE_ERRNOS or "StorageFull" in str(err):
            return WriteError(path, os.strerror(code or errno.ENOSPC).lower(), code or errno.ENOSPC)
    # torch.save reports a short write without an errno ("[enforce fail at inline_container.cc] unexpected pos")
    if isinstance(err, RuntimeError) and "inline_container" in str(err):
        return WriteError(path, "no space left on device" if _nearly_full(Path(path)) else
                          f"torch.save failed ({str(err).splitlines()[0][:160]})", errno.ENOSPC)
    return None


def as_write_error(path: str | os.PathLike[str], err: BaseException) -> WriteError | None:
    """`err` as a one-line `WriteError` naming `path` when it is a file-system failure (full disk, permissions,
    read-only), else None: for writers that cannot go through `write_folder_atomically` (Accelerate's save_state)."""
    return _write_failure(path, err)


def _nearly_full(path: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system holding `path` (or its nearest existing parent) has under `margin` bytes free."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free < margin
    except OSError:
        return False


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on a fresh path in the target's folder (created if missing), then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex[:12]}.tmp.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        failure = _write_failure(path, err) if isinstance(err, Exception) else None
        if failure is not None and failure is not err:
            raise failure from None
        raise
    return path


def write_text_atomically(path: str | os.PathLike[str], text: str) -> Path:
    """`path.write_text(text)` (UTF-8), atomically."""
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomically(path: str | os.PathLike[str], data: Any, **dump_kwargs: Any) -> Path:
    """`json.dump(data, ..., **dump_kwargs)` into `path` (UTF-8), atomically."""
    def dump(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, **dump_kwargs)

    return write_atomically(path, dump)


# ---------------------------------------------------------------------------------------------- folders
_STAGING = re.compile(r"\.(partial|old)-(?:(\d+)-)?[0-9a-f]{8,12}$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale_staging(target: str | os.PathLike[str]) -> list[Path]:
    """Remove staging folders of earlier writes to `target` whose process is gone (killed runs); returns them.

    Names without a process id (``.<name>.partial-<hex8>``, from before ids were recorded) count as stale.
    """
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    prefix = f".{target.name}."
    for child in target.parent.iterdir():
        if not child.name.startswith(prefix):
            continue
        found = _STAGING.fullmatch(child.name[len(prefix) - 1:])
        if found is None or (found.group(2) is not None and _alive(int(found.group(2)))):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child)
    return removed


def write_folder_atomically(target: str | os.PathLike[str], write: Callable[[Path], Any], *,
                            overwrite: bool = False) -> Path:
    """Call `write(staging)` on a new empty folder beside `target`, then rename it to `target`.

    `target` must not exist, or be an empty folder, or `overwrite` must be set (its old content is replaced only
    once the new one is complete). Any failure removes the staging folder and leaves `target` as it was; file-system
    failures (full disk, permissions) are raised as `WriteError` naming `target`. Folders and files get the usual
    umask permissions (0755 / 0644 under umask 022), whatever mode the writer used. Staging folders of killed
    earlier writes are removed first.
    """
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise FileExistsError(f"output {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {target} is not empty (pass --overwrite to replace it)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_failure(target, err) or err from None
    clean_stale_staging(target)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    staging = target.parent / f".{target.name}.partial-{tag}"
    try:
        staging.mkdir()
        folder_mode = staging.stat().st_mode & 0o777  # 0o777 & ~umask
        write(staging)
        _ordinary_permissions(staging, folder_mode)
        _swap_in(staging, target, target.parent / f".{target.name}.old-{tag}")
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        failure = _write_failure(target, err) if isinstance(err, Exception) else None
        if failure is not None and failure is not err:
            raise failure from None
        raise
    return target


def _ordinary_permissions(folder: Path, folder_mode: int) -> None:
    """Give what a writer created with private modes (safetensors and mkdtemp use 0600 / 0700) the modes of
    ordinary files and folders under the current umask; executable files stay executable."""
    file_mode = folder_mode & 0o666
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), folder_mode)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, folder_mode if os.stat(path).st_mode & 0o100 else file_mode)


def _swap_in(ready: Path, target: Path, trash: Path) -> None:
    """Rename `ready` to `target`; an existing `target` is moved to `trash` first and deleted afterwards."""
    if not target.exists():
        os.replace(ready, target)
        return
    os.replace(target, trash)
    try:
        os.replace(ready, target)
    except BaseException:
        os.replace(trash, target)
        raise
    shutil.rmtree(trash, ignore_errors=True)
