"""`posebh hub publish-official|push`: model repos on the Hub (layer 5, thin wrappers over `posebh_hf.hub`).

  posebh hub publish-official --src FILE.pth --repo-id ORG/posebh-vit-b [--variant base|huge] [--dry-run DIR]
  posebh hub push --model DIR --repo-id ORG/NAME [--revision BRANCH] [--remote-code] [--private]

Repo ids need a namespace (`ORG/NAME`): the Hub cannot create a bare `NAME`. Credentials come from `hf auth login`
or HF_TOKEN; HF_ENDPOINT selects the server.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register", "run_publish_official", "run_push"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hub publish-official` and `hub push` to a `posebh` CLI parser."""
    parser = subparsers.add_parser("hub", help="publish PoseBH models to the Hugging Face Hub",
                                   description="Model repos on the Hub: config, safetensors weights, a model card "
                                               "and (optionally) standalone remote code.")
    verbs = parser.add_subparsers(dest="hub_verb", required=True, metavar="{publish-official,push}")

    official = verbs.add_parser(
        "publish-official", help="convert the official PoseBH .pth and publish model + prototype packs",
        description="Convert the official PoseBH checkpoint, write the model card (the authors' numbers cited as "
                    "theirs, apart from anything measured here) and one prototype pack per skeleton "
                    "(ORG/NAME-protos-<skeleton>), then push them all. With --dry-run DIR nothing is uploaded: "
                    "the repo folders are written to DIR/ORG/NAME... exactly as they would be pushed.")
    official.add_argument("--src", required=True, type=Path, help="official PoseBH .pth (torch.load weights_only)")
    official.add_argument("--repo-id", required=True, help="model repo ORG/NAME, e.g. my-org/posebh-vit-b")
    official.add_argument("--variant", default="base", choices=["base", "huge", "tiny"],
                          help="backbone size (tiny is a test preset)")
    official.add_argument("--dry-run", type=Path, default=None, metavar="DIR",
                          help="write the repo folders under DIR instead of pushing")
    official.add_argument("--datasets", nargs="+", default=None, help="dataset names in head order")
    official.add_argument("--measured", type=Path, default=None, metavar="FILE.json",
                          help="results measured with posebh_hf: a JSON list of {dataset, split, metric, value}")
    official.add_argument("--measured-source", default="", help="how --measured was obtained (command, data)")
    official.add_argument("--license", default="other", help="licence id for the card metadata (default other)")
    official.add_argument("--no-remote-code", dest="remote_code", action="store_false",
                          help="do not add the standalone remote code (configuration_posebh.py, modeling_posebh.py, "
                                   "posebh_*.py) for trust_remote_code=True")
    official.add_argument("--private", action="store_true", help="create the repos private")
    official.set_defaults(func=run_publish_official)

    push = verbs.add_parser("push", help="push a PoseBH model folder with a model card")
    push.add_argument("--model", required=True, help="PoseBH model folder")
    push.add_argument("--repo-id", required=True, help="target repo ORG/NAME")
    push.add_argument("--revision", default=None, help="branch to push to (created when missing)")
    push.add_argument("--remote-code", action="store_true",
                      help="also push standalone remote code so the repo loads with trust_remote_code=True")
    push.add_argument("--description", default="", help="a paragraph for the card")
    push.add_argument("--license", default="other", help="licence id for the card metadata (default other)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.set_defaults(func=run_push)


def run_publish_official(args: argparse.Namespace) -> int:
    from ..hub.publish import publish_official, read_measured_results

    if not args.src.is_file():
        raise FileNotFoundError(f"--src {args.src} does not exist")
    measured = read_measured_results(args.measured) if args.measured else []
    result = publish_official(args.src, args.repo_id, variant=args.variant, dry_run=args.dry_run,
                              dataset_names=args.datasets, measured_results=measured,
                              measured_source=args.measured_source, remote_code=args.remote_code,
                              license=args.license, private=args.private or None)
    print(json.dumps({"conversion": result.conversion_summary,
                      "folders": {k: str(v) for k, v in result.folders.items()},
                      "commits": result.commits}, indent=2))
    return 0


def run_push(args: argparse.Namespace) -> int:
    from ..hub.model_repo import load_model, push_model_to_hub

    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"--model {args.model} is not a folder")
    model = load_model(args.model)
    commit = push_model_to_hub(model, args.repo_id, revision=args.revision, private=args.private or None,
                               remote_code=args.remote_code, description=args.description, license=args.license)
    print(json.dumps({"repo_id": args.repo_id, "revision": args.revision or "main", "commit": commit}))
    return 0
