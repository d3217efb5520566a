"""How each corpus's stored boxes and keypoints feed the training transform (on top of spec §5.5's AugmentConfig).

``transforms.augment_config_for`` holds the per-dataset augmentation numbers; this adds what depends on how a
corpus was converted: whether the stored box is a person box (aspect-corrected, padded, jittered, clipped to the
image) or MPII's ready-made square ROI, and which keypoints decide whether an instance is labelled at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..skeletons import Skeleton
from ..transforms import DATASET_AUGMENT, AugmentConfig

__all__ = ["BOX_SOURCES", "InstanceSpec", "instance_spec_for"]

BOX_SOURCES = ("bbox", "roi", "content")


@dataclass(frozen=True)
class InstanceSpec:
    """Per-corpus settings of the top-down training transform.

    Attributes:
        augment: the augmentation / target parameters (spec §5.5, §5.6).
        box_source: where an instance's ROI comes from. ``"bbox"``: its person box (cleaned as mmpose does,
            aspect-corrected, padded, centre-jittered). ``"roi"``: the stored box already is the crop ROI (MPII): no
            cleaning, aspect correction or jitter. ``"content"``: the image is a ready crop around one instance (e.g.
            mdt_mini's crops/): the box is the image shrunk by ``bbox_padding`` about its centre, so the padded ROI
            is the whole image; the stored box is ignored (it can be degenerate there).
        labelled_range: ``[start, stop)`` keypoints of which at least one must be labelled for an instance to be
            used (COCO-WholeBody: the 17 body keypoints, as mmpose); ``None`` = any keypoint.
    """

    augment: AugmentConfig = AugmentConfig()
    box_source: str = "bbox"
    labelled_range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.box_source not in BOX_SOURCES:
            raise ValueError(f"box_source must be one of {BOX_SOURCES}, got {self.box_source!r}")


_EXTRA_PRESETS: dict[str, InstanceSpec] = {
    # MPII boxes are the reference's square ROI (see converters/mpii.py): padding already applied, no jitter.
    "mpii": InstanceSpec(replace(DATASET_AUGMENT["mpii"], bbox_padding=1.0, center_jitter_prob=0.0),
                         box_source="roi"),
    "coco_wholebody": InstanceSpec(DATASET_AUGMENT["coco_wholebody"], labelled_range=(0, 17)),
    # InterHand2.6M hands: tight joint boxes enlarged by 1.5 (spec §9.7).
    "interhand": InstanceSpec(replace(AugmentConfig(), bbox_padding=1.5)),
}


def instance_spec_for(name: str | None, skeleton: Skeleton, augment: AugmentConfig | None = None,
                      box_source: str | None = None) -> InstanceSpec:
    """The spec for a corpus (its source format or dataset name), adapted to what ``skeleton`` supports.

    Unknown names (custom corpora) get the COCO defaults. Flip is turned off for skeletons without flip pairs
    (a mirrored single hand or a two-view mirror rig is not a left/right swap) and for skeletons whose `flip_test`
    forbids mirroring, half-body for skeletons without
    upper-body ids (the split would be meaningless). An explicit ``augment`` replaces the preset's numbers, an
    explicit ``box_source`` the preset's.
    """
    key = (name or "").replace("-", "_")
    spec = _EXTRA_PRESETS.get(key) or InstanceSpec(DATASET_AUGMENT.get(key, AugmentConfig()))
    config = augment or spec.augment
    if (not skeleton.flip_pairs or not skeleton.allows_flip) and config.flip_prob > 0:
        config = replace(config, flip_prob=0.0)
    if not skeleton.upper_body_ids and config.half_body:
        config = replace(config, half_body=False)
    return replace(spec, augment=config, box_source=box_source or spec.box_source)
