"""One entry point for every protocol (layer 1): ``evaluate(protocol, gt, pred, ...)`` -> metrics dict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..skeletons import Skeleton
from .coco import evaluate_coco, evaluate_coco_wholebody, evaluate_crowdpose
from .errors import EvaluationInputError
from .inputs import JsonSource
from .pck import evaluate_pck, evaluate_pck_auc_epe
from .pckh import evaluate_pckh

__all__ = ["PROTOCOLS", "Protocol", "evaluate"]


@dataclass(frozen=True)
class Protocol:
    """How a protocol scores: ``kind`` is ``"oks"`` (COCO-style AP), ``"pckh"`` or ``"pck"``; ``skeleton`` the
    default skeleton; ``use_area`` whether the OKS scale is the segment area (else 0.53 w h of the box)."""

    name: str
    kind: str
    skeleton: str | None
    use_area: bool = True
    reference: str = ""


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("coco", "oks", "coco", True, "pycocotools COCOeval (mmpose: xtcocotools, use_area=True)"),
    Protocol("ap10k", "oks", "ap10k", True, "as coco with AP-10K sigmas"),
    Protocol("apt36k", "oks", "apt36k", True, "as coco with AP-10K sigmas"),
    Protocol("ochuman", "oks", "ochuman", True, "as coco (COCO sigmas)"),
    Protocol("pw3d", "oks", "smpl24", False, "as coco with 3DPW sigmas, use_area=False"),
    Protocol("aic", "oks", "aic", False, "xtcocotools COCOeval use_area=False (mmpose AIC)"),
    Protocol("crowdpose", "oks", "crowdpose", False, "xtcocotools 'keypoints_crowd', use_area=False"),
    Protocol("coco_wholebody", "oks", "coco_wholebody", True, "xtcocotools keypoints_{body,...,wholebody}"),
    Protocol("pckh", "pckh", "mpii", False, "mmpose TopDownMpiiDataset.evaluate (PCKh@0.5, @0.1)"),
    Protocol("pck-auc-epe", "pck", "interhand", False, "mmpose keypoint_pck_accuracy / keypoint_auc / keypoint_epe"),
    Protocol("pck", "pck", None, False, "mmpose keypoint_pck_accuracy with box or torso normalisation"),
)}


# Options each protocol accepts beyond (gt, pred, skeleton).
_OPTIONS: dict[str, frozenset[str]] = {
    "crowdpose": frozenset({"thresholds"}),
    "pckh": frozenset({"headboxes", "pred_one_based"}),
    "pck-auc-epe": frozenset({"pck_thr", "auc_max_px"}),
    "pck": frozenset({"thr", "norm", "torso"}),
}


def _oks(protocol: Protocol) -> Callable[..., dict[str, Any]]:
    if protocol.name == "crowdpose":
        return evaluate_crowdpose
    if protocol.name == "coco_wholebody":
        return evaluate_coco_wholebody
    return lambda gt, pred, skeleton, **kw: evaluate_coco(gt, pred, skeleton, use_area=protocol.use_area, **kw)


def evaluate(
    protocol: str, gt: JsonSource, pred: JsonSource, skeleton: str | Skeleton | None = None, **options: Any
) -> dict[str, Any]:
    """Score ``pred`` against ``gt`` with a named protocol (:data:`PROTOCOLS`).

    Args:
        protocol: one of :data:`PROTOCOLS`.
        gt, pred: paths or parsed objects (formats in the protocol functions' docstrings).
        skeleton: overrides the protocol's default skeleton (needed for custom skeletons).
        **options: protocol options: ``headboxes``, ``pred_one_based`` (pckh); ``pck_thr``, ``auc_max_px``
            (pck-auc-epe); ``thr``, ``norm``, ``torso`` (pck); ``thresholds`` (crowdpose).

    Raises:
        EvaluationInputError: unknown protocol, bad input files or records.
    """
    if protocol not in PROTOCOLS:
        raise EvaluationInputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    spec = PROTOCOLS[protocol]
    unknown = sorted(set(options) - _OPTIONS.get(protocol, frozenset()))
    if unknown:
        raise EvaluationInputError(f"protocol {protocol!r} takes no option(s) {unknown}; it accepts "
                                   f"{sorted(_OPTIONS.get(protocol, frozenset())) or 'none'}")
    skel = skeleton if skeleton is not None else spec.skeleton
    if spec.kind == "oks":
        return _oks(spec)(gt, pred, skeleton=skel, **options)
    if spec.kind == "pckh":
        return evaluate_pckh(gt, pred, **options)
    if protocol == "pck-auc-epe":
        return evaluate_pck_auc_epe(gt, pred, skeleton=skel, **options)
    return evaluate_pck(gt, pred, skeleton=skel, **options)
