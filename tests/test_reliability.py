"""Bad inputs and hostile conditions: each case is an input and its exact outcome (issue 17).

Every case checks three things: the message (one line, naming the path or the dotted config key and the value), the
exit code (2), and the file system afterwards (nothing written outside the target, nothing half-written, the target
as it was). Full-disk cases mount a small tmpfs and run only as root where `mount` works; they skip otherwise.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import posebh_hf
from posebh_hf.cli import main
from posebh_hf.data import build_dataset, load_pose_dataset
from posebh_hf.hub import PrototypePack, embedding_fingerprint
from posebh_hf.modeling import PoseBHConfig, PoseBHForPoseEstimation
from posebh_hf.skeletons import Skeleton
from posebh_hf.training.config import ConfigError, load_train_config
from posebh_hf.training.launch import parse_args

PROGRESS = re.compile(r"\d+%\|")  # tqdm bars (transformers' "Loading weights") are not messages
SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
SECRET = b"TOP SECRET, must never be embedded"
MOUSE = Skeleton.from_dict({"name": "mouse4", "keypoints": ["snout", "left_ear", "right_ear", "tail_base"],
                            "skeleton": [[1, 2], [1, 3], [2, 4], [3, 4]]})


def run_cli(argv: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr without warnings) of `posebh ARGV`, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(cwd or Path.cwd()):
        code = main(argv)
    lines = [line for line in err.getvalue().splitlines()
             if line.strip() and "Warning" not in line and not PROGRESS.search(line)]
    return code, out.getvalue(), "\n".join(lines)


def one_line(err: str) -> str:
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every file (with its content) and folder (None) under `folder`, hidden ones included: a snapshot."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------------------------------------- data build
@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """tmp/{images/0..2.jpg, bad.jpg (random bytes), link.jpg -> ../secret.txt}, tmp/secret.txt."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        pixels = np.random.RandomState(i).randint(0, 255, (40, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.jpg")
    (images / "bad.jpg").write_bytes(np.random.RandomState(9).bytes(300))
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (images / "link.jpg").symlink_to(tmp_path / "secret.txt")
    return tmp_path


def write_coco(folder: Path, name: str, extra_images: list[dict] = (), annotations: list[dict] | None = None) -> Path:
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 30, "height": 40} for i in range(3)]
    images += list(extra_images)
    if annotations is None:
        annotations = [{"id": 100 + i, "image_id": im["id"], "bbox": [1, 1, 20, 30], "keypoints": [5, 5, 2] * 4}
                       for i, im in enumerate(images)]
    category = {"id": 1, "name": "mouse", "keypoints": list(MOUSE.keypoint_names), "skeleton": [[1, 2]]}
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [category]}))
    return path


def build_argv(annotations: Path, images: Path | str, out: Path, *extra: str) -> list[str]:
    return ["data", "build", "--format", "coco-custom", "--annotations", str(annotations), "--images", str(images),
            "--out", str(out), "--no-progress", *extra]


def arrow_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.glob("*.arrow"))


@pytest.mark.parametrize("file_name", ["../secret.txt", "{root}/secret.txt", "link.jpg", "0.jpg/../../secret.txt"],
                         ids=["dotdot", "absolute", "symlink-out", "through-a-file"])
def test_file_names_may_not_leave_the_image_folder(corpus: Path, file_name: str) -> None:
    ann = write_coco(corpus, "planted", [{"id": 9, "file_name": file_name.format(root=corpus), "width": 30,
                                          "height": 40}])
    before = listing(corpus)
    code, _, err = run_cli(build_argv(ann, corpus / "images", corpus / "out"))
    assert code == 2 and "image id=9" in one_line(err) and "'file_name'" in err
    assert ("outside the image folder" in err) or ("not found" in err and file_name.startswith("0.jpg"))
    assert listing(corpus) == before  # nothing written, no staging folder left
    code, out, _ = run_cli(build_argv(ann, corpus / "images", corpus / "out", "--skip-bad"))
    assert code == 0 and "3 images" in out and "skipped 1" in out and "file_name: 1" in out
    assert SECRET not in arrow_bytes(corpus / "out")


def test_undecodable_image_is_a_record_error(corpus: Path) -> None:
    ann = write_coco(corpus, "undecodable", [{"id": 9, "file_name": "bad.jpg", "width": 30, "height": 40}])
    code, _, err = run_cli(build_argv(ann, corpus / "images", corpus / "out"))
    assert code == 2 and "image id=9" in one_line(err) and "cannot decode image" in err
    assert not (corpus / "out").exists()
    code, out, _ = run_cli(build_argv(ann, corpus / "images", corpus / "out", "--skip-bad"))
    assert code == 0 and "3 images" in out and "skipped 1" in out


def test_duplicate_image_ids_are_refused_and_skipped_whole(corpus: Path) -> None:
    # id 1 twice: the converter groups annotations by image id, so neither file can be told which ones are its own
    ann = write_coco(corpus, "dup_image", [{"id": 1, "file_name": "2.jpg", "width": 30, "height": 40}],
                     annotations=[{"id": 100, "image_id": 1, "bbox": [1, 1, 20, 30], "keypoints": [5, 5, 2] * 4},
                                  {"id": 101, "image_id": 2, "bbox": [1, 1, 20, 30], "keypoints": [5, 5, 2] * 4}])
    code, _, err = run_cli(build_argv(ann, corpus / "images", corpus / "out"))
    assert code == 2 and "image id 1 appears more than once" in one_line(err)
    assert not (corpus / "out").exists()
    code, out, _ = run_cli(build_argv(ann, corpus / "images", corpus / "out", "--skip-bad"))
    assert code == 0 and "2 images, 1 instances" in out and "skipped 2" in out
    dataset, _ = load_pose_dataset(corpus / "out")
    assert dataset["image_id"] == [2, 3] and dataset["file_name"] == ["1.jpg", "2.jpg"]
    assert json.loads((corpus / "out" / "posebh.json").read_text())["summary"]["images"] == 2


def test_duplicate_annotation_ids_are_refused_or_dropped(corpus: Path) -> None:
    anns = [{"id": 100, "image_id": i + 1, "bbox": [1, 1, 20, 30], "keypoints": [5, 5, 2] * 4} for i in range(3)]
    ann = write_coco(corpus, "dup_ann", annotations=anns)
    code, _, err = run_cli(build_argv(ann, corpus / "images", corpus / "out"))
    assert code == 2 and "annotation id 100 is used more than once" in one_line(err)
    code, out, _ = run_cli(build_argv(ann, corpus / "images", corpus / "out", "--skip-bad"))
    assert code == 0 and "3 images, 1 instances" in out and "skipped 2" in out


def test_relative_images_folder_still_embeds_the_bytes(corpus: Path) -> None:
    ann = write_coco(corpus, "ok")
    code, _, _ = run_cli(build_argv(Path("../ok.json"), ".", corpus / "out"), cwd=corpus / "images")
    assert code == 0
    import datasets

    dataset = datasets.load_from_disk(str(corpus / "out")).cast_column("image", datasets.Image(decode=False))
    raw = dataset[0]["image"]
    assert raw["bytes"] == (corpus / "images" / "0.jpg").read_bytes() and raw["path"] == "0.jpg"
    assert ann.is_file()


def test_a_killed_build_leaves_the_target_and_its_staging_is_cleaned(corpus: Path) -> None:
    ann = write_coco(corpus, "ok")
    out = corpus / "out"
    build_dataset("coco-custom", ann, corpus / "images", out, progress=False)
    before = listing(out)
    writing = corpus / "child-is-writing"
    pid = os.fork()
    if pid == 0:  # child: a build that stalls after its first image, to be killed there
        try:
            import posebh_hf.data.build as build

            original = build._row

            def slow_row(*args, **kwargs):
                row = original(*args, **kwargs)
                writing.touch()  # killed only here: not while it holds a lock shared with the parent (tqdm's)
                time.sleep(60)
                return row

            build._row = slow_row
            build_dataset("coco-custom", ann, corpus / "images", out, progress=False, overwrite=True)
        finally:
            os._exit(1)
    deadline = time.monotonic() + 300  # generous: the child may wait for a CPU on a loaded machine
    while not writing.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    staged = list(corpus.glob(".out.partial-*"))
    assert len(staged) == 1 and listing(out) == before  # killed mid-write: the old dataset is untouched
    legacy = corpus / ".out.partial-deadbeef"  # the name used before staging folders carried a process id
    legacy.mkdir()
    alive = corpus / f".out.partial-{os.getpid()}-0123456789ab"  # a build still running (this process)
    alive.mkdir()
    build_dataset("coco-custom", write_coco(corpus, "ok"), corpus / "images", out, progress=False, overwrite=True)
    assert sorted(p.name for p in corpus.glob(".out.*")) == [alive.name]
    assert load_pose_dataset(out)[0].num_rows == 3


# ---------------------------------------------------------------------------------------------- training config
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lr=.inf", "optimizer.lr must be a finite number > 0, got inf"),
        ("optimizer.lr=0", "optimizer.lr must be a finite number > 0, got 0.0"),
        ("optimizer.weight_decay=-5", "optimizer.weight_decay must be a finite number >= 0, got -5.0"),
        ("optimizer.betas=[2.0, 0.999]", "optimizer.betas must be two numbers in [0, 1), got [2.0, 0.999]"),
        ("optimizer.eps=-1", "optimizer.eps must be a finite number > 0, got -1.0"),
        ("optimizer.grad_clip=.nan", "optimizer.grad_clip must be a finite number > 0 or null, got nan"),
        ("checkpoint.keep=0", "checkpoint.keep must be >= 1, or null to keep every checkpoint"),
        ("checkpoint.keep=-1", "got -1"),
        ("losses.css_conf_thr=1.5", "losses.css_conf_thr must be in [0, 1], got 1.5"),
        ("losses.head=.inf", "losses.head must be a finite number >= 0, got inf"),
        ("eval.pck_threshold=-0.2", "eval.pck_threshold must be in (0, 1], got -0.2"),
        ("schedule.epochs=abc", "schedule.epochs: expected an integer, got 'abc'"),
        ("optimizer.lr=fast", "optimizer.lr: expected a number, got 'fast'"),
        ("data.batch_size=[1]", "data.batch_size: expected an integer, got [1]"),
    ],
)
def test_config_values_are_checked_when_read(override: str, expected: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_train_config(SMOKE, [override])
    assert expected in str(err.value) and "\n" not in str(err.value)
    from posebh_hf.training.launch import main as train_main

    assert train_main(["--config", str(SMOKE), "output_dir=/nonexistent/never-created", override]) == 2
    assert expected in one_line(capsys.readouterr().err.strip())
    assert not Path("/nonexistent/never-created").exists()


def test_keep_null_keeps_everything_and_overrides_mix_with_resume() -> None:
    assert load_train_config(SMOKE, ["checkpoint.keep=null"]).checkpoint.keep is None
    assert load_train_config(SMOKE, ["checkpoint.keep=1"]).checkpoint.keep == 1
    args = parse_args(["--config", "c.yaml", "output_dir=/x", "--resume", "latest", "schedule.epochs=3"])
    assert args.overrides == ["output_dir=/x", "schedule.epochs=3"] and args.resume == "latest"


# ---------------------------------------------------------------------------------------------- pack writers
@pytest.fixture(scope="module")
def model_and_pack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pack_io")
    torch.manual_seed(0)
    model = PoseBHForPoseEstimation(PoseBHConfig.tiny())
    model.save_pretrained(root / "model")
    protos = F.normalize(torch.randn(4, model.config.num_prototypes, model.config.embed_dim), dim=-1)
    PrototypePack(prototypes=protos, skeleton=MOUSE, similarity=model.config.similarity, dataset_index=3,
                  embedding_fingerprint=embedding_fingerprint(model), base_model="org/tiny").save(root / "pack")
    return root / "model", root / "pack"


def attach_argv(model_and_pack: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    model, pack = model_and_pack
    return ["pack", "attach", "--model", str(model), "--pack", str(pack), "--out", str(out), *extra]


def export_argv(model_and_pack: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return ["pack", "export", "--model", str(model_and_pack[0]), "--skeleton", "coco", "--out", str(out), *extra]


@pytest.mark.parametrize("verb", ["attach", "export"])
def test_out_into_a_non_empty_folder_needs_overwrite(model_and_pack: tuple[Path, Path], tmp_path: Path,
                                                     verb: str) -> None:
    argv = attach_argv if verb == "attach" else export_argv
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(argv(model_and_pack, out))
    assert code == 2 and f"output folder {out} is not empty (pass --overwrite" in one_line(err)
    assert listing(tmp_path) == {"mine": None, "mine/notes.txt": b"mine"}
    code, _, _ = run_cli(argv(model_and_pack, out, "--overwrite"))
    expected = "config.json" if verb == "attach" else "prototype_config.json"
    assert code == 0 and (out / expected).is_file() and not (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging or old copy left


@pytest.mark.parametrize("verb", ["attach", "export"])
def test_written_folders_get_ordinary_permissions(model_and_pack: tuple[Path, Path], tmp_path: Path,
                                                  verb: str) -> None:
    argv = attach_argv if verb == "attach" else export_argv
    old = os.umask(0o022)
    try:
        code, _, _ = run_cli(argv(model_and_pack, tmp_path / "new" / "out"))
    finally:
        os.umask(old)
    assert code == 0
    out = tmp_path / "new" / "out"
    assert out.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == dict.fromkeys(  # model.safetensors: 0600
        ["config.json", "model.safetensors"] if verb == "attach" else
        ["README.md", "prototype_config.json", "prototypes.safetensors"], 0o644)
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["out"]


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (root only); skips the test where mounting is not possible."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize(("verb", "size"), [("attach", "64k"), ("export", "16k")])
def test_full_disk_leaves_the_target_as_it_was(model_and_pack: tuple[Path, Path], tmp_path: Path, verb: str,
                                               size: str) -> None:
    # 64k holds the model's config.json but not its weights; 16k the prototypes but not their JSON and card:
    # exactly where a file-by-file writer left half a folder
    argv = attach_argv if verb == "attach" else export_argv
    with small_disk(tmp_path / "disk", size) as disk:
        code, _, err = run_cli(argv(model_and_pack, disk / "out"))
        assert code == 2 and one_line(err) == f"posebh pack: error: cannot write {disk / 'out'}: no space left on device"
        assert listing(disk) == {} and list(disk.iterdir()) == []
        (disk / "out").mkdir()
        (disk / "out" / "old.txt").write_text("previous content")
        code, _, err = run_cli(argv(model_and_pack, disk / "out", "--overwrite"))
        assert code == 2 and "no space left on device" in one_line(err)
        assert listing(disk) == {"out": None, "out/old.txt": b"previous content"}


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_conversion import make_official_state_dict  # the tiny official-layout checkpoint of those tests

    path = tmp_path_factory.mktemp("official") / "tiny.pth"
    torch.save(make_official_state_dict(), path)
    return path


def convert_argv(pth: Path, out: Path, *extra: str) -> list[str]:
    return ["convert", "official", "--src", str(pth), "--dst", str(out), "--variant", "tiny", *extra]


def test_converted_folders_get_ordinary_permissions(official_pth: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        code, _, err = run_cli(convert_argv(official_pth, tmp_path / "new" / "out"))
    finally:
        os.umask(old)
    assert code == 0, err
    out = tmp_path / "new" / "out"
    assert out.stat().st_mode & 0o777 == 0o755  # was 0700 (mkdtemp), model.safetensors 0600
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == dict.fromkeys(
        ["config.json", "model.safetensors"], 0o644)
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["out"]


def test_convert_onto_a_full_disk_is_one_line_and_leaves_nothing(official_pth: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "64k") as disk:
        code, _, err = run_cli(convert_argv(official_pth, disk / "out"))
        assert code == 2 and one_line(err) == f"posebh convert: error: cannot write {disk / 'out'}: no space left on device"
        assert list(disk.iterdir()) == []
        (disk / "out").mkdir()
        (disk / "out" / "old.txt").write_text("previous content")
        code, _, err = run_cli(convert_argv(official_pth, disk / "out", "--overwrite"))
        assert code == 2 and "no space left on device" in one_line(err)
        assert listing(disk) == {"out": None, "out/old.txt": b"previous content"}


def test_training_onto_a_full_disk_is_one_line_and_leaves_no_partial_checkpoint(tmp_path: Path) -> None:
    from posebh_hf.training.launch import main as train_main

    config = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    with small_disk(tmp_path / "disk", "1m") as disk:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = train_main(["--config", str(config), f"output_dir={disk / 'run'}",
                               f"data.cache_dir={tmp_path / 'cache'}", "checkpoint.every_steps=3", "max_steps=6",
                               "logging.trackers=[]"])
        lines = [line for line in stderr.getvalue().replace("\r", "\n").splitlines()
                 if line.startswith("error")]
        assert code == 2 and lines == [f"error: cannot write {disk / 'run' / 'checkpoints' / 'step_3'}: "
                                       "no space left on device"], stderr.getvalue()[-2000:]
        assert list((disk / "run" / "checkpoints").iterdir()) == []  # the partial checkpoint was removed


def _others_can_read(folder: Path) -> bool:
    """Whether a user who is neither owner nor group member can list `folder` and reach it from /."""
    return bool(folder.stat().st_mode & stat.S_IROTH) and all(
        p.stat().st_mode & stat.S_IXOTH for p in (folder, *folder.parents))


def test_permission_denied_is_one_line(model_and_pack: tuple[Path, Path]) -> None:
    package = Path(posebh_hf.__file__).resolve().parent
    if os.geteuid() == 0 and not _others_can_read(package):  # the child runs as uid 65534 and reads the package
        pytest.skip(f"uid 65534 cannot read the posebh_hf package at {package} (a checkout inside a private folder)")
    shared = Path(tempfile.mkdtemp(prefix="posebh-perm-"))  # readable by the unprivileged user below
    try:
        shared.chmod(0o755)
        inputs = tuple(Path(shutil.copytree(p, shared / p.name)) for p in model_and_pack)
        for path in shared.rglob("*"):  # some writers create 0600 files; the other user must read the inputs
            path.chmod(0o755 if path.is_dir() else 0o644)
        locked = shared / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        code, err = _attach_as_nobody(inputs, locked / "out")
        assert code == 2 and one_line(err) == f"posebh pack: error: cannot write {locked / 'out'}: permission denied"
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# Imports what `pack attach` needs while still root (the interpreter and its libraries may sit in a folder only root
# can read, e.g. /root/.pyenv), then becomes uid 65534 and runs the command.
_AS_NOBODY = """
import os, sys
import posebh_hf.cli, posebh_hf.hub, posebh_hf.modeling, safetensors.torch
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(posebh_hf.cli.main(sys.argv[1:]))
"""


def _attach_as_nobody(model_and_pack: tuple[Path, Path], out: Path) -> tuple[int, str]:
    """`posebh pack attach` in a fresh interpreter that (as root) drops to uid 65534, since root ignores permissions.

    A fresh process, not os.fork(): forking this multi-threaded pytest process (an HTTP server thread of another
    test, torch's pools) once left the child waiting forever on a lock another thread held at the fork."""
    child = subprocess.run([sys.executable, "-c", _AS_NOBODY, *attach_argv(model_and_pack, out)],
                           capture_output=True, text=True, timeout=300, cwd=out.parent.parent)
    lines = [line for line in child.stderr.splitlines()
             if line.strip() and "Warning" not in line and not PROGRESS.search(line)]
    return child.returncode, "\n".join(lines)
