"""Gate health: how many channel-attention gates of each trained run attend to nothing.

A channel gate that outputs the same value on every validation image (V2's bias-free channel
MLP whose hidden ReLUs never fire outputs exactly 0.5 on all channels) only rescales its
features by a constant: the attention module then contributes through its spatial gate only.
Measured per model and training seed, because whether a gate dies is a property of a run.
"""

from __future__ import annotations

import pandas as pd

from ffcore.runs.context import Study

CONSTANT_TOLERANCE = 1e-6   # gate output range over the images at or below which a channel is constant


def _validation_tensors(study: Study):
    """The validation images (model-selection split: gate health is a diagnostic, not a headline),
    resized to the profile's test scale, one preprocessed tensor at a time."""
    import cv2
    import numpy as np

    from ffcore.data.layout import WiderFaceLayout
    from ffcore.eval.inference import resize_factor
    from ffcore.preprocess import image_to_tensor, read_image

    index = WiderFaceLayout.find(study.data_root, need=("val",)).validation_index()
    entries = list(index)[:study.profile.eval_limit] if study.profile.eval_limit else list(index)
    for entry in entries:
        image = read_image(entry.image_path)
        factor = resize_factor(*image.shape[:2], study.profile.eval_scale)
        if factor != 1.0:
            image = cv2.resize(np.float32(image), None, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        yield image_to_tensor(image)


def default_gate_runs(study: Study) -> list[str]:
    """V1, V2 alone and V2 distilled over every seed the study trains them with."""
    from ffcore.study.comparisons import arm_runs
    from ffcore.runs.plan import DISTILLED_SUFFIX

    p = study.profile
    return [run for base in (p.teacher, p.student, p.student + DISTILLED_SUFFIX) for run in arm_runs(study, base).values()]


def gate_health_table(study: Study, runs: list[str] | None = None, name: str = "gate_health") -> pd.DataFrame:
    """One row per run and attention module: channels, constant channels and their share, the channel
    MLP's dead hidden ReLUs, and the gate's min / max over the validation images."""
    from ffcore.eval.attention_maps import channel_gate_health
    from ffcore.study.evaluation import load_run_model
    from ffcore.runs.plan import model_of_run, split_seed

    runs = runs or default_gate_runs(study)
    rows = []
    for run in runs:
        model = load_run_model(study, run)
        for gate in channel_gate_health(model, _validation_tensors(study), tolerance=CONSTANT_TOLERANCE):
            rows.append({"model": model_of_run(run), "arm": split_seed(run)[0], "run": run,
                         "seed": split_seed(run)[1],
                         "module": gate.module, "position": gate.position, "kind": gate.kind,
                         "channels": gate.channels, "constant channels": gate.constant_channels,
                         "share constant %": round(100 * gate.share_constant, 1),
                         "hidden units": gate.hidden_units, "dead hidden units": gate.dead_hidden_units,
                         "gate min": round(gate.gate_min, 4), "gate max": round(gate.gate_max, 4),
                         "images": gate.images})
    table = pd.DataFrame(rows)
    dead = table[table["share constant %"] >= 100]
    study.save_table(table, name, checkpoints=runs, tolerance=CONSTANT_TOLERANCE,
                     caption="Channel-attention gates over the validation images: channels whose gate output did not "
                             f"move (range <= {CONSTANT_TOLERANCE:g}) and the channel MLP's hidden ReLUs that never "
                             "fired, per run and module",
                     headline=(f"{len(dead)} of {len(table)} gates constant on every channel"
                               + (": " + ", ".join(f"{r['run']} {r['position']}" for _, r in dead.iterrows())
                                  if len(dead) else "")))
    return table


def describe_gate_health(study: Study, name: str = "gate_health"):
    """"What this shows" for the gate-health table, from the written table."""
    from ffcore.report.tables import read_table, markdown

    table = read_table(study, name)
    lines = []
    for (arm, position), part in table.groupby(["arm", "position"], sort=False):
        dead = part[part["share constant %"] >= 100]
        if len(dead):
            lines.append(f"{arm} {position}: constant on every channel (the same value on every image) in "
                         f"{len(dead)} of {len(part)} runs, its fixed values {dead['gate min'].min():.3f}-"
                         f"{dead['gate max'].max():.3f}; dead hidden ReLUs {int(dead['dead hidden units'].min())}-"
                         f"{int(dead['dead hidden units'].max())} of {int(dead['hidden units'].max())}")
    runs = table.groupby("arm", sort=False)["run"].nunique()
    summary = ", ".join(f"{arm} {count} run{'s' * (count > 1)}" for arm, count in runs.items())
    if not lines:
        return markdown(f"**What this shows.** Over the validation images ({summary}), no channel gate is constant "
                        "on every channel: every channel attention responds to its input.")
    return markdown(f"**What this shows.** Over the validation images ({summary}):\n\n- " + "\n- ".join(lines)
                    + "\n\nA gate constant on every channel multiplies its features by fixed factors whatever the image "
                      "(exactly 0.5 for V2's bias-free MLP when its hidden ReLUs never fire; V1's MLP falls back on "
                      "its output bias): it selects no channel for the input at hand, and that module's "
                      "attention works through its spatial gate alone. A gate dead in every seed is systematic "
                      "(an ablation without it would cost nothing); one dead in some seeds is a training outcome.")
