"""Pictures (layer 4): keypoints drawn on images (`keypoints`) and the prototype map of a model (`prototype_map`,
paper Fig. 11; imported on its own since it needs the model classes and, for t-SNE, scikit-learn)."""

from __future__ import annotations

from .keypoints import check_score_threshold, draw_instances, draw_pose

__all__ = ["check_score_threshold", "draw_instances", "draw_pose"]
