"""Evaluation protocols equal to the reference tools (layer 1: pure functions on files and arrays).

``evaluate(protocol, gt, pred)`` scores a prediction file with one of :data:`PROTOCOLS` (COCO-style OKS AP for
coco / ap10k / apt36k / ochuman / pw3d / aic / crowdpose / coco_wholebody, MPII PCKh, InterHand2.6M PCK/AUC/EPE and a
generic PCK). Running a model over a dataset split is ``posebh_hf.model_evaluation.evaluate_model`` (layer 4: it
drives the pipeline; also ``posebh_hf.evaluate_model``).
"""

from __future__ import annotations

from .coco import evaluate_aic, evaluate_coco, evaluate_coco_wholebody, evaluate_crowdpose
from .cocoeval import COCO_STAT_NAMES, FastKeypointEval
from .errors import EvaluationInputError
from .oks import oks_matrix, oks_nms, oks_pairs, rescore_instances
from .pck import evaluate_pck, evaluate_pck_auc_epe, keypoint_auc, keypoint_epe, keypoint_pck_accuracy
from .pckh import evaluate_pckh, pckh_metrics
from .protocols import PROTOCOLS, Protocol, evaluate

__all__ = [
    "COCO_STAT_NAMES",
    "PROTOCOLS",
    "EvaluationInputError",
    "FastKeypointEval",
    "Protocol",
    "evaluate",
    "evaluate_aic",
    "evaluate_coco",
    "evaluate_coco_wholebody",
    "evaluate_crowdpose",
    "evaluate_pck",
    "evaluate_pck_auc_epe",
    "evaluate_pckh",
    "keypoint_auc",
    "keypoint_epe",
    "keypoint_pck_accuracy",
    "oks_matrix",
    "oks_nms",
    "oks_pairs",
    "pckh_metrics",
    "rescore_instances",
]

