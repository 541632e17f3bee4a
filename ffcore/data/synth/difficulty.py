"""Which synthetic faces count in each WIDER FACE setting, and which carry landmarks.

Difficulty rule (in WIDER's spirit: easy ⊂ medium ⊂ hard; faces not in a setting are
"ignored" by the evaluator, neither true nor false positives), with h = box height in pixels
and v = visible fraction:
- hard:   h >= 8 and v >= 0.4 (at most 60 % hidden);
- medium: h >= 16 and v >= 0.6;
- easy:   h >= 40, v >= 0.85 and no heavy blur.
Faces with v < 0.25 are marked `invalid`. Landmarks are written (label 1) for faces with
h >= 12 and v >= 0.5, otherwise -1 (as WIDER's tiny faces have none).
Attributes in the bbx_gt lists and .mat files: blur 0/1/2 (none, normal, heavy), expression
(1 = wide open mouth), illumination (1 = extreme), invalid, occlusion 0/1/2 (< 5 %,
<= 30 %, > 30 % hidden), pose (1 = |yaw| > 0.6 or |roll| > 30 degrees).
"""

from __future__ import annotations

import numpy as np

from ffcore.data.synth.config import SynthConfig
from ffcore.data.synth.render import RenderedImage


def difficulty_masks(rendered: RenderedImage, config: SynthConfig) -> dict[str, np.ndarray]:
    """Which faces count in easy / medium / hard (the rule in this module's docstring)."""
    heights = rendered.boxes[:, 3] - rendered.boxes[:, 1]
    valid = rendered.attributes[:, 3] == 0
    hard = valid & (heights >= config.hard_min_height) & (rendered.visible >= config.hard_min_visible)
    medium = hard & (heights >= config.medium_min_height) & (rendered.visible >= config.medium_min_visible)
    easy = medium & (heights >= config.easy_min_height) & (rendered.visible >= config.easy_min_visible) & \
        (rendered.attributes[:, 0] < 2)
    return {"easy": easy, "medium": medium, "hard": hard}


def has_landmarks(rendered: RenderedImage, config: SynthConfig) -> np.ndarray:
    """Which faces are annotated with landmarks (label 1): tall and visible enough, all points inside."""
    heights = rendered.boxes[:, 3] - rendered.boxes[:, 1]
    inside = np.all(rendered.landmarks >= 0, axis=1)
    return (heights >= config.landmark_min_height) & (rendered.visible >= config.landmark_min_visible) & inside
