"""Loss weights and CSS thresholds of the MDT recipe (spec §4.9, §10)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["LossWeights"]


@dataclass(frozen=True)
class LossWeights:
    """Factors of every PoseBH loss term; defaults are the released MDT config.

    Attributes:
        head: each dataset head's heatmap MSE (1.0).
        proto: common factor on PPC + PPD (`loss_proto.weight`, 1.25e-5).
        ppc: pixel-prototype contrastive factor (0.01; effective 1.25e-7).
        ppd: pixel-prototype distance factor (0.001; effective 1.25e-8).
        phm: prototype-heatmap MSE (3.33e-6; also inside the cluster and CSS terms).
        cps: factor on the whole cross-dataset cluster term (1e-2).
        css: factor on the whole cross-type self-supervision term (1e-3).
        css_conf_thr: CSS confidence threshold on both heads' heatmap maxima (0.25).
        css_match_dist: CSS max distance between the two heads' peaks, heatmap pixels (2.1).
    """

    head: float = 1.0
    proto: float = 1.25e-5
    ppc: float = 0.01
    ppd: float = 0.001
    phm: float = 3.33e-6
    cps: float = 1e-2
    css: float = 1e-3
    css_conf_thr: float = 0.25
    css_match_dist: float = 2.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"LossWeights.{name} must be >= 0; got {value}")
