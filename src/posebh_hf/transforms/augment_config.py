"""Per-dataset augmentation / target parameters (spec 5.5, 5.6, 6.2-6.4)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..codecs import HeatmapCodec


@dataclass(frozen=True)
class AugmentConfig:
    """Top-down training augmentation and target settings for one dataset (defaults: COCO, spec 5.5).

    ``use_udp`` selects the UDP affine crop, UDP targets, DARK/UDP decoding and an unshifted flip-back together
    (the PoseBH configs always switch them together); ``False`` gives the plain affine, MSRA targets, +-0.25
    decoding and a 1-px shifted flip-back.
    """

    input_size: tuple[int, int] = (192, 256)  # (W, H)
    heatmap_size: tuple[int, int] = (48, 64)  # (W, H)
    use_udp: bool = True
    sigma: float = 2.0
    flip_prob: float = 0.5
    half_body: bool = True
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8  # strictly more visible joints than this are required
    half_body_padding: float = 1.5
    scale_factor: float = 0.5
    rot_factor: float = 40.0
    rot_prob: float = 0.6
    bbox_padding: float = 1.25
    center_jitter_prob: float = 0.3  # drawn once per annotation at load time (mmpose _xywh2cs)
    center_jitter_factor: float = 0.4

    def __post_init__(self) -> None:
        for name in ("flip_prob", "half_body_prob", "rot_prob", "center_jitter_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.scale_factor < 1.0:
            raise ValueError(f"AugmentConfig.scale_factor must be in [0, 1), got {self.scale_factor}")
        if self.rot_factor < 0 or self.sigma <= 0:
            raise ValueError(
                f"AugmentConfig needs rot_factor >= 0 and sigma > 0, got {self.rot_factor}, {self.sigma}"
            )
        if (
            len(self.input_size) != 2
            or len(self.heatmap_size) != 2
            or min(*self.input_size, *self.heatmap_size) < 2
        ):
            raise ValueError(
                f"AugmentConfig sizes must be (W, H) >= 2, got {self.input_size}, {self.heatmap_size}"
            )

    @property
    def aspect_ratio(self) -> float:
        """Crop width / height (0.75 for 192 x 256)."""
        return self.input_size[0] / self.input_size[1]

    def codec(self) -> HeatmapCodec:
        """The heatmap codec matching these settings."""
        return HeatmapCodec(tuple(self.input_size), tuple(self.heatmap_size), self.sigma, self.use_udp)


_COCO = AugmentConfig()
_PLAIN = replace(_COCO, use_udp=False)

DATASET_AUGMENT: dict[str, AugmentConfig] = {
    "coco": _COCO,
    "aic": _PLAIN,
    "mpii": replace(_COCO, half_body=False),
    "ap10k": _PLAIN,
    "apt36k": _PLAIN,
    "coco_wholebody": _PLAIN,
    # evaluation only (spec 6.3: plain affine, default decoding, shifted flip-back)
    "ochuman": _PLAIN,
}


def augment_config_for(dataset_name: str) -> AugmentConfig:
    """Spec 5.5 defaults for a dataset name (``coco``, ``aic``, ``mpii``, ``ap10k``, ``apt36k``, ``coco_wholebody``...)."""
    try:
        return DATASET_AUGMENT[dataset_name]
    except KeyError:
        known = ", ".join(sorted(DATASET_AUGMENT))
        raise ValueError(f"no augmentation defaults for dataset {dataset_name!r}; known: {known}") from None
