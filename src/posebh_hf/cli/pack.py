"""`posebh pack export|push|pull|attach`: prototype packs (layer 5, thin wrappers over `posebh_hf.hub`).

  posebh pack export --model DIR --skeleton NAME --out DIR [--base-model ORG/NAME] [--base-revision R] [--overwrite]
  posebh pack push DIR --repo-id ORG/NAME [--revision BRANCH] [--private]
  posebh pack pull ORG/NAME [--revision R] [--subfolder PATH] [--out DIR]
  posebh pack attach --model DIR --pack PACK --out DIR [--replace] [--allow-fingerprint-mismatch] [--overwrite]

`export` and `attach` write `--out` in a staging folder beside it and rename it into place: a failure (a full disk,
no permission) leaves `--out` as it was, and an existing non-empty `--out` is replaced only with `--overwrite`.
Hub credentials come from the usual places (`hf auth login`, HF_TOKEN); HF_ENDPOINT selects the server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

__all__ = ["register", "run_attach", "run_export", "run_pull", "run_push"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pack export|push|pull|attach` to a `posebh` CLI parser."""
    parser = subparsers.add_parser("pack", help="export, push, pull and attach prototype packs",
                                   description="Prototype packs: one skeleton's keypoint prototypes [K, M, D] plus "
                                               "its definition, shareable on the Hub and attachable to a model.")
    verbs = parser.add_subparsers(dest="pack_verb", required=True, metavar="{export,push,pull,attach}")

    export = verbs.add_parser("export", help="write one skeleton's prototypes of a model as a pack folder")
    export.add_argument("--model", required=True, help="PoseBH model folder or Hub repo id")
    export.add_argument("--skeleton", required=True, help="dataset or attached skeleton name in the model")
    export.add_argument("--out", required=True, type=Path, help="output pack folder")
    export.add_argument("--base-model", default=None,
                        help="Hub repo id recorded as the pack's base model (default: --model)")
    export.add_argument("--base-revision", default=None, help="revision/commit of the base model to record")
    export.add_argument("--learned", default=None, help="one-line description of how the prototypes were learned")
    export.add_argument("--revision", default=None, help="revision of --model when it is a Hub repo id")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    export.set_defaults(func=run_export)

    push = verbs.add_parser("push", help="upload a pack folder to a Hub model repo (created when missing)")
    push.add_argument("folder", type=Path, help="pack folder (from `posebh pack export`)")
    push.add_argument("--repo-id", required=True, help="target repo, ORG/NAME")
    push.add_argument("--revision", default=None, help="branch to push to (created when missing; default main)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.set_defaults(func=run_push)

    pull = verbs.add_parser("pull", help="download and validate a pack; prints its summary as JSON")
    pull.add_argument("repo_id", help="pack repo ORG/NAME (or a local pack folder)")
    pull.add_argument("--revision", default=None, help="branch, tag or commit")
    pull.add_argument("--subfolder", default=None, help="folder of the pack inside the repo")
    pull.add_argument("--out", type=Path, default=None, help="also copy the pack files into this folder")
    pull.set_defaults(func=run_pull)

    attach = verbs.add_parser("attach", help="attach a pack to a model and save the result")
    attach.add_argument("--model", required=True, help="PoseBH model folder or Hub repo id")
    attach.add_argument("--pack", required=True, help="pack folder or Hub repo id")
    attach.add_argument("--out", required=True, type=Path, help="output model folder")
    attach.add_argument("--pack-revision", default=None, help="revision of --pack when it is a Hub repo id")
    attach.add_argument("--replace", action="store_true", help="overwrite a skeleton the model already has")
    attach.add_argument("--allow-fingerprint-mismatch", action="store_true",
                        help="attach although the pack was learned against another embedding head (warns)")
    attach.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    attach.set_defaults(func=run_attach)


def _summary(pack: object, folder: Path | None = None) -> dict[str, object]:
    from ..hub import PrototypePack

    assert isinstance(pack, PrototypePack)
    out: dict[str, object] = {
        "skeleton": pack.name, "num_keypoints": pack.num_keypoints, "num_prototypes": pack.num_prototypes,
        "embed_dim": pack.embed_dim, "similarity": pack.similarity, "dataset_index": pack.dataset_index,
        "base_model": pack.base_model, "base_revision": pack.base_revision,
        "embedding_fingerprint": pack.embedding_fingerprint, "source": pack.source,
    }
    if folder is not None:
        out["folder"] = str(folder)
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an `--out` that would need `--overwrite` before any work is done."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {out} is not empty (pass --overwrite to replace it)")


def run_export(args: argparse.Namespace) -> int:
    from ..hub import export_prototype_pack
    from ..hub.model_repo import load_model

    _check_out(args.out, args.overwrite)
    model = load_model(args.model, revision=args.revision)
    learned = {"method": "user", "description": args.learned} if args.learned else None
    base_model = args.base_model or (args.model if not Path(args.model).exists() else None)
    pack = export_prototype_pack(model, args.skeleton, base_model=base_model, base_revision=args.base_revision,
                                 learned=learned)
    folder = pack.save(args.out, overwrite=args.overwrite)
    print(json.dumps(_summary(pack, folder), indent=2))
    return 0


def run_push(args: argparse.Namespace) -> int:
    from ..hub import PrototypePack
    from ..hub.download import push_folder

    pack = PrototypePack.load(args.folder)  # validate before anything leaves the machine
    with tempfile.TemporaryDirectory(prefix="posebh-pack-") as tmp:
        pack.save(tmp, repo_id=args.repo_id)  # re-render the card with the real repo id
        commit = push_folder(tmp, args.repo_id, revision=args.revision, private=args.private or None,
                             commit_message=f"Upload prototype pack {pack.name}")
    print(json.dumps({"repo_id": args.repo_id, "revision": args.revision or "main", "commit": commit}))
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from ..hub import CARD_FILE, CONFIG_FILE, PROTOTYPES_FILE, PrototypePack
    from ..hub.download import fetch_pack_folder

    folder = fetch_pack_folder(args.repo_id, revision=args.revision, subfolder=args.subfolder)
    pack = PrototypePack.load(folder).with_source(args.repo_id if args.revision is None
                                                  else f"{args.repo_id}@{args.revision}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG_FILE, PROTOTYPES_FILE, CARD_FILE):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, args.out / name)
        folder = args.out
    print(json.dumps(_summary(pack, folder), indent=2))
    return 0


def run_attach(args: argparse.Namespace) -> int:
    from ..hub import attach_prototype_pack
    from ..hub.model_repo import load_model
    from ..modeling import save_model_folder

    _check_out(args.out, args.overwrite)
    model = load_model(args.model)
    rows = attach_prototype_pack(model, args.pack, replace=args.replace,
                                 allow_fingerprint_mismatch=args.allow_fingerprint_mismatch,
                                 revision=args.pack_revision)
    base = Path(args.model).expanduser()
    processor = base / "preprocessor_config.json"  # the base model's crop size and decoding travel with it
    save_model_folder(model, args.out, overwrite=args.overwrite,
                      extra=(lambda folder: shutil.copyfile(processor, folder / processor.name))
                      if processor.is_file() else None)
    print(json.dumps({"model": str(args.out), "prototype_rows": [rows.start, rows.stop],
                      "extra_prototype_skeletons": list(model.config.extra_prototype_skeletons)}))
    return 0
