"""The thesis fork's current models (fokouarnaud/FeatherFace f023145) in the study.

- `fork_parameter_table`: the fork's 52-channel "CBAM baseline" beside the released V1, with
  why both are "0.49M";
- `fork_training_log_figure`: the fork's real WIDER FACE training curve (its TensorBoard log),
  with our run of the `fork_eca_cbam` recipe overlaid when a full-profile run exists;
- `fork_detections_figure`: the trained ECA-CBAM beside RetinaFace on a real photo;
- `fork_weights_table`: our evaluation of the fork's weights on the profile's evaluation split,
  beside the fork's reported WIDER FACE AP as a labelled claim;
- `attention_maps_figure`: channel, spatial and combined masks of every attention module.

The fork's weights are real WIDER FACE-trained weights whatever the profile; the artifacts
that use them say so in their provenance.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ffcore.runs.context import Study

FORK_MODEL = "featherface_eca_cbam"
FORK_WEIGHTS_FILE = "featherface_eca_cbam_widerface.pth"
FORK_LOG_FILE = "featherface_eca_cbam_widerface_training_log.csv"
# Run name standing for the fork's shared WIDER FACE-trained weights (not a run of this study).
FORK_WEIGHTS_RUN = "featherface_eca_cbam_widerface"
# The fork's claim for those weights (ARCHITECTURES.md, "The fork's current models"); shown only as a claim.
FORK_CLAIMED_AP = {"easy": 85.8, "medium": 83.9, "hard": 78.3}
FORK_CLAIM_SOURCE = "fokouarnaud/FeatherFace f023145, reported for the published weights (WIDER FACE val)"
FORK_PARAMETER_MODELS = ("featherface_v1", "featherface_cbam_exact", "featherface_eca_cbam",
                         "featherface_eca_cbam_parallel")


def fork_weights_path() -> Path:
    """The fork's trained ECA-CBAM file in the shared folder (FileNotFoundError naming it if absent)."""
    from ffcore.paths import shared_dir

    path = shared_dir() / "weights" / FORK_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the fork's trained ECA-CBAM weights are not at {path} "
                                f"(set FFCORE_SHARED to the shared folder)")
    return path


def load_fork_detector(device: str = "cpu"):
    """`featherface_eca_cbam` with the fork's WIDER FACE-trained weights, in eval mode."""
    from ffcore.models import load_pretrained

    return load_pretrained(FORK_MODEL, fork_weights_path()).to(device).eval()


def _weights_provenance(study: Study, **notes):
    from ffcore.checkpoint import file_sha256
    from ffcore.report.provenance import REAL_PHOTOS, Provenance

    # used for the real photos only (detections, attention masks): the weights were trained on WIDER FACE
    path = fork_weights_path()
    return Provenance(profile=study.profile.name, dataset=REAL_PHOTOS, checkpoints={path.name: file_sha256(path)},
                      notes={"weights": "the fork's ECA-CBAM trained on WIDER FACE (f023145)", **notes})


# ------------------------------------------------------------------ parameter counts

def fork_parameter_table(study: Study) -> pd.DataFrame:
    """True and thop parameter counts of the released V1 and the fork's three 52-channel models.

    The paper's "0.49M" is thop's count of the released 64-channel V1 (488,661): thop misses the
    deformable convolutions' weights and the BiFPN fusion weights. The fork then shrank the
    channels after the backbone to 52 until the true count of its "CBAM baseline" (488,664)
    matched that figure; so the two "0.49M" are different models counted in different ways.
    """
    from ffcore.study.architecture import model_summary

    notes = {
        "featherface_v1": "released code, 64 channels; the paper's 0.49M is this model's thop count",
        "featherface_cbam_exact": "fork's CBAM baseline: 52 channels, no shuffle convs; true count = 0.49M",
        "featherface_eca_cbam": "CBAM-exact with ECA -> SAM; the fork's published WIDER FACE weights",
        "featherface_eca_cbam_parallel": "CBAM-exact with ECA * SAM from the same input",
    }
    rows = []
    for name in FORK_PARAMETER_MODELS:
        summary = model_summary(name, study.profile.flops_size)
        rows.append({"model": name, "parameters": summary["parameters"], "thop_parameters": summary["thop_parameters"],
                     "missed_by_thop": summary["parameters"] - summary["thop_parameters"],
                     f"GFLOPs_{study.profile.flops_size}": round(summary["gflops"], 3), "note": notes[name]})
    table = pd.DataFrame(rows)
    by_name = table.set_index("model")
    study.save_table(table, "params_fork_models", data_free=True,
                     caption="The fork's 52-channel models beside the released V1: true and thop parameter counts",
                     headline=f"V1 thop {by_name.loc['featherface_v1', 'thop_parameters']:,} vs fork CBAM baseline "
                              f"true {by_name.loc['featherface_cbam_exact', 'parameters']:,}: both '0.49M'")
    return table


# ---------------------------------------------------------------------- training log

def read_fork_training_log(path: str | Path | None = None) -> pd.DataFrame:
    """The fork's per-epoch loss and learning rate (columns epoch, loss, lr) from its TensorBoard export.

    The fork logs `Epoch/Learning_Rate` after stepping its scheduler, so the rate in row e is
    the one epoch e + 1 trained with.
    """
    from ffcore.paths import shared_dir

    path = Path(path) if path is not None else shared_dir() / "reference" / FORK_LOG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the fork's training log is not at {path} (set FFCORE_SHARED to the shared folder)")
    rows = pd.read_csv(path)
    missing = {"series", "step", "value"} - set(rows.columns)
    if missing:
        raise ValueError(f"{path}: expected columns series, step, value; missing {sorted(missing)}")
    series = {}
    for tag, column in (("Epoch/Loss", "loss"), ("Epoch/Learning_Rate", "lr")):
        values = rows[rows["series"] == tag]
        if values.empty:
            raise ValueError(f"{path}: no rows of series {tag!r}")
        series[column] = values.set_index("step")["value"]
    table = pd.DataFrame(series).rename_axis("epoch").reset_index()
    return table.astype({"epoch": int}).sort_values("epoch", ignore_index=True)


def fork_training_log_figure(study: Study, run: str = FORK_MODEL, name: str = "fork_training_log"):
    """Loss per epoch and learning rate of the fork's WIDER FACE run; our `run` overlaid on the full profile.

    Only a full-profile run (WIDER FACE, the fork's recipe) is comparable, so other profiles'
    runs are not drawn.
    """
    from ffcore.checkpoint import file_sha256
    from ffcore.paths import shared_dir
    from matplotlib.ticker import LogFormatter

    from ffcore.report.plotting import model_style, new_figure, pretty_name
    from ffcore.report.provenance import WIDERFACE, Provenance, write_figure
    from ffcore.study.training_tables import run_history

    log_path = shared_dir() / "reference" / FORK_LOG_FILE
    fork = read_fork_training_log(log_path)
    fig, axes = new_figure(ncols=2, aspect=0.36)
    loss_ax, lr_ax = axes[0, 0], axes[0, 1]
    label = f"{pretty_name(FORK_MODEL)}: the fork's WIDER FACE run, commit f023145"
    colour = model_style(FORK_MODEL)["color"]   # the fork model's colour in every figure
    loss_ax.plot(fork["epoch"], fork["loss"], color=colour, label=label)
    lr_ax.plot(fork["epoch"], fork["lr"], color=colour, label=label)
    checkpoints = {log_path.name: file_sha256(log_path)}
    ours_drawn = False
    if study.profile.name == "full" and (study.run_dir(run) / "metrics.csv").is_file():
        ours = run_history(study, run)
        ours_colour = "#000000"   # not the fork's: the same model, our run
        loss_ax.plot(ours["epoch"], ours["loss"], color=ours_colour, label=f"ours: {pretty_name(run)} (full profile)")
        lr_ax.plot(ours["epoch"], ours["lr"], color=ours_colour, label=f"ours: {pretty_name(run)} (full profile)")
        if study.checkpoint_path(run).is_file():
            checkpoints[run] = file_sha256(study.checkpoint_path(run))
        ours_drawn = True
    loss_ax.set(xlabel="epoch", ylabel="training loss (2 box + class + landmark)", yscale="log")
    loss_ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))   # 4, 6, 10 rather than 4x10^0
    loss_ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    # both logs record the rate after the epoch's scheduler steps; the fork's last point is its restart
    lr_ax.set(xlabel="epoch", ylabel="learning rate after the epoch", yscale="log")
    # above the panels: inside, it covered the first epochs' loss
    fig.legend(*loss_ax.get_legend_handles_labels(), loc="outside upper center", ncol=2, fontsize=7, frameon=False)
    provenance = Provenance(profile=study.profile.name, dataset=WIDERFACE, checkpoints=checkpoints,
                            notes={"source": f"{FORK_LOG_FILE} (the fork's TensorBoard scalars)",
                                   "ours_overlaid": ours_drawn})
    write_figure(fig, study.figures_dir, name, provenance,
                 headline=f"fork's WIDER FACE run: loss {fork['loss'].iloc[0]:.2f} (epoch 1) -> "
                          f"{fork['loss'].iloc[-1]:.2f} (epoch {int(fork['epoch'].iloc[-1])})"
                          + ("; ours overlaid" if ours_drawn else ""))
    return fig


# ------------------------------------------------------------- detection and accuracy

def fork_detections_figure(study: Study, image_name: str = "crowd.jpg", name: str | None = None):
    """The fork's trained ECA-CBAM beside RetinaFace-MobileNet-0.25 (both WIDER FACE-trained) on a real photo."""
    from ffcore.checkpoint import file_sha256
    from ffcore.eval.detect import DEFAULT_WEIGHTS, detect_faces, load_detector
    from ffcore.paths import shared_dir
    from ffcore.report.plotting import new_figure, pretty_name
    from ffcore.preprocess import read_image
    from ffcore.report.provenance import write_figure
    from ffcore.study.detections import DETECTION_THRESHOLD, draw_detections

    image = read_image(shared_dir() / "images" / image_name)
    retina_weights = shared_dir().joinpath(*DEFAULT_WEIGHTS["retinaface_mnet025"])
    found = {}
    fig, axes = new_figure(ncols=2, aspect=0.5 * image.shape[0] / image.shape[1])
    for ax, (model_name, detector, title) in zip(axes[0], (
            (FORK_MODEL, load_fork_detector(study.device), pretty_name(FORK_WEIGHTS_RUN)),
            ("retinaface_mnet025", load_detector("retinaface_mnet025", retina_weights, study.device),
             pretty_name("retinaface_mnet025_widerface")))):
        detections = detect_faces(detector, image, threshold=DETECTION_THRESHOLD, device=study.device)
        found[model_name] = len(detections)
        draw_detections(ax, image, detections, None, f"{title}\n{len(detections)} faces with score ≥ {DETECTION_THRESHOLD}")
    provenance = _weights_provenance(study, image=image_name, threshold=DETECTION_THRESHOLD)
    provenance.checkpoints[retina_weights.name] = file_sha256(retina_weights)
    name = name or f"fork_detections_{Path(image_name).stem}"
    write_figure(fig, study.figures_dir, name, provenance,
                 headline=f"{image_name}: ECA-CBAM {found[FORK_MODEL]} faces, "
                          f"RetinaFace {found['retinaface_mnet025']} (WIDER FACE weights)")
    return fig


def evaluate_fork_weights(study: Study):
    """`EvalResult` of the fork's trained weights on the profile's evaluation split (`evaluation_split`).

    The weights are the study's WIDER FACE-trained reference run, so they go through the same
    evaluation and the same code-keyed cache as every other row (`evaluation.evaluate_run`)."""
    from ffcore.study.evaluation import evaluate_run

    return evaluate_run(study, FORK_WEIGHTS_RUN)


def fork_weights_table(study: Study) -> pd.DataFrame:
    """Our WIDER FACE-protocol AP of the fork's weights on this profile's evaluation split, and the fork's claim.

    The claim is the fork's own figure on the real WIDER FACE validation set; it is not
    reproduced here and is labelled as a claim.
    """
    from ffcore.data.ground_truth import SETTINGS
    from ffcore.runs.datasets import evaluation_split

    result = evaluate_fork_weights(study)
    split = evaluation_split(study).name
    limit = study.profile.eval_limit
    scope = f"{result.num_images} images" + (f", only the first {limit} predicted: not comparable" if limit else "")
    ours = {"source": f"ours: ffcore evaluation on the {study.dataset} {split} split "
                      f"(test scale {study.profile.eval_scale}, {scope})",
            "kind": "measured", **{f"AP {s} %": round(100 * float(result.ap[s]), 2) for s in SETTINGS}}
    claim = {"source": FORK_CLAIM_SOURCE, "kind": "claim (not reproduced)",
             **{f"AP {s} %": FORK_CLAIMED_AP[s] for s in SETTINGS}}
    table = pd.DataFrame([ours, claim])
    table.insert(0, "model", FORK_MODEL)
    study.save_table(table, "fork_weights_ap", checkpoints={FORK_WEIGHTS_FILE: _record_fork_weights(study)},
                     test_scale=str(study.profile.eval_scale), weights="the fork's WIDER FACE-trained ECA-CBAM",
                     caption="The fork's trained ECA-CBAM: our evaluation beside the fork's reported AP (a claim)",
                     headline=f"fork weights on the {study.dataset} {split} split: " + "/".join(f"{ours[f'AP {s} %']:.1f}"
                                                                                 for s in SETTINGS)
                              + " (E/M/H AP %); fork claims " + "/".join(f"{FORK_CLAIMED_AP[s]:.1f}" for s in SETTINGS)
                              + " on WIDER FACE")
    return table


def _record_fork_weights(study: Study) -> str:
    """The sha256 prefix of the fork's weights file, recorded among the study's checkpoints."""
    from ffcore.checkpoint import file_sha256

    digest = file_sha256(fork_weights_path())
    study.used_checkpoints[FORK_WEIGHTS_RUN] = digest
    return digest


# ---------------------------------------------------------------------- attention maps

def _attention_model(study: Study, run: str):
    from ffcore.report.plotting import pretty_name

    if run == FORK_WEIGHTS_RUN:
        return load_fork_detector(study.device), pretty_name(FORK_WEIGHTS_RUN)
    from ffcore.study.evaluation import load_run_model

    return load_run_model(study, run), f"{pretty_name(run)}, trained on the {study.dataset} data ({study.profile.name} profile)"


# Print size: drawn at the text width, so these are the sizes on the page (>= 8 pt).
ATTENTION_FONT_POINTS = 8


def draw_attention_grid(rgb, masks, title: str):
    """One compact grid for one model, at the text width: a column per attention module (C3-C5 after
    the backbone, P3-P5 after the neck), a row per mask: the channel mask M_c (bars), the spatial mask
    M_s and the combined mask M_c * M_s (mean over channels) over the photo. `masks`: objects with
    `channel`, `spatial`, `combined` tensors and `position`, `kind` (ffcore.eval.attention_maps)."""
    import cv2
    import numpy as np

    from ffcore.report.plotting import PALETTE, new_figure

    height, width = rgb.shape[:2]
    # three rows of panels a sixth of the width wide, keeping the photo's proportions, plus titles and scales
    fig, axes = new_figure(ncols=len(masks), nrows=3, aspect=3 * height / width / len(masks) + 0.22)
    for column, m in enumerate(masks):
        channel_ax, spatial_ax, combined_ax = axes[:, column]
        channel_ax.bar(np.arange(m.channel.numel()), m.channel.numpy(), width=1.0, color=PALETTE[0])
        channel_ax.set(ylim=(0, 1), xlim=(0, m.channel.numel()), xticks=[])
        channel_ax.set_title(f"{m.position} ({m.kind})", fontsize=ATTENTION_FONT_POINTS)
        channel_ax.tick_params(labelsize=ATTENTION_FONT_POINTS)
        if column:
            channel_ax.set_yticklabels([])
        spatial_image = spatial_ax.imshow(m.spatial.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        combined = cv2.resize(m.combined.mean(dim=0).numpy(), (width, height), interpolation=cv2.INTER_NEAREST)
        combined_ax.imshow(rgb)
        combined_image = combined_ax.imshow(combined, cmap="magma", vmin=0, vmax=1, alpha=0.6)
        for ax in (spatial_ax, combined_ax):
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, label in zip(axes[:, 0], ("M_c", "M_s", "M_c * M_s")):
        ax.set_ylabel(label, fontsize=ATTENTION_FONT_POINTS)
    # one scale per map row (every panel shares it: vmin 0, vmax 1), at its right
    for image, row, label in ((spatial_image, 1, "M_s"), (combined_image, 2, "mean M_c * M_s")):
        bar = fig.colorbar(image, ax=axes[row, :], location="right", shrink=0.9, aspect=8, pad=0.01)
        bar.set_label(label, fontsize=ATTENTION_FONT_POINTS)
        bar.ax.tick_params(labelsize=ATTENTION_FONT_POINTS)
    bar.solids.set_alpha(0.6)   # the combined mask, as drawn over the photo
    fig.suptitle(title, fontsize=ATTENTION_FONT_POINTS + 1)
    return fig


def attention_maps_figure(study: Study, run: str = FORK_WEIGHTS_RUN, image_name: str = "crowd.jpg",
                          name: str | None = None):
    """One compact grid per model (`draw_attention_grid`): for each attention module its channel mask,
    spatial mask and combined mask over the photo.

    `run` is a run of the study (its best.pt) or `FORK_WEIGHTS_RUN` for the fork's trained weights.
    """
    import cv2

    from ffcore.eval.attention_maps import attention_masks_for_image
    from ffcore.paths import shared_dir
    from ffcore.preprocess import read_image
    from ffcore.report.provenance import write_figure

    image = read_image(shared_dir() / "images" / image_name)
    model, description = _attention_model(study, run)
    masks = attention_masks_for_image(model, image)
    fig = draw_attention_grid(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), masks,
                              f"Attention masks on {image_name}: {description}")
    if run == FORK_WEIGHTS_RUN:
        provenance = _weights_provenance(study, image=image_name)
    else:
        provenance = study.provenance([run], image=image_name)
    name = name or f"attention_maps_{run}"
    write_figure(fig, study.figures_dir, name, provenance,
                 headline=f"{run}: {len(masks)} attention modules on {image_name}; mean spatial mask "
                          + ", ".join(f"{m.position} {float(m.spatial.mean()):.2f}" for m in masks))
    return fig
