"""Output-shape compatibility of a teacher and a student (what distillation needs to line up)."""

from __future__ import annotations

import pandas as pd
import torch

from ffcore.anchors import feature_map_sizes, num_priors


@torch.no_grad()
def output_shapes(model: torch.nn.Module, size: int) -> dict[str, tuple[int, ...]]:
    """Shapes of loc / conf / landm and of the three per-level feature maps for one size×size input."""
    model.eval()
    loc, conf, landm, features = model(torch.zeros(1, 3, size, size), return_features=True)
    shapes = {"loc": tuple(loc.shape), "conf": tuple(conf.shape), "landm": tuple(landm.shape)}
    for level, feature in zip(("P3", "P4", "P5"), features):
        shapes[f"features {level}"] = tuple(feature.shape)
    return shapes


def shape_compatibility_table(teacher: torch.nn.Module, student: torch.nn.Module, teacher_name: str,
                              student_name: str, size: int = 640) -> pd.DataFrame:
    """One row per output: teacher shape, student shape, whether they match, and what distillation
    does with it (KL on class logits needs equal prior counts; the feature MSE needs equal spatial
    sizes and, when the channel counts differ, a 1×1 adapter)."""
    teacher_shapes, student_shapes = output_shapes(teacher, size), output_shapes(student, size)
    expected_priors = num_priors(size, size, teacher.prior_config)
    grids = feature_map_sizes(size, size, teacher.prior_config)
    rows = [{"output": "priors", teacher_name: str(expected_priors),
             student_name: str(num_priors(size, size, student.prior_config)),
             "match": expected_priors == num_priors(size, size, student.prior_config),
             "used by distillation": "prior-aligned KL needs the same prior order"}]
    for key in teacher_shapes:
        t, s = teacher_shapes[key], student_shapes[key]
        if key.startswith("features"):
            level = ("P3", "P4", "P5").index(key.split()[-1])
            spatial_ok = t[2:] == s[2:] == tuple(grids[level])
            match = t == s
            use = ("feature MSE directly" if match else
                   f"feature MSE after a 1x1 adapter {s[1]}->{t[1]} channels" if spatial_ok else
                   "spatial sizes differ: feature MSE impossible")
        else:
            match = t == s
            use = {"loc": "task loss only", "conf": "KL on softened class logits (T^2 scaled)",
                   "landm": "task loss only"}[key]
        rows.append({"output": key, teacher_name: "x".join(map(str, t)), student_name: "x".join(map(str, s)),
                     "match": bool(match), "used by distillation": use})
    return pd.DataFrame(rows)
