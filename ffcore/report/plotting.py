"""One figure style for the thesis: readable in print (grey-scale safe markers, 9-pt text).

Every figure of the project (study, evaluation curves, benchmarks) is made through
`new_figure`, so sizes, fonts and colours agree across notebooks and every figure is a
pyplot figure that a notebook displays at the end of its cell; `model_style(name)` gives
each model the same colour and marker everywhere it appears.
"""

from __future__ import annotations

import re

import matplotlib
import matplotlib.pyplot as plt

# Okabe-Ito: distinguishable for colour-blind readers and distinct in grey-scale print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

# Thesis column width in inches (A4, 2.5 cm margins).
TEXT_WIDTH = 6.3

_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
    "lines.markersize": 5,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,   # embed TrueType so the PDF text stays selectable in the thesis
    "figure.dpi": 80,     # inline in the notebooks (files are written at write_figure's dpi): keeps them small
}

# Fixed colour (and marker) of every model that appears in more than one figure, so a model keeps its
# colour across the thesis. Okabe-Ito first; the two after it (Tol's wine and grey-brown) extend it
# past eight models without repeating a colour inside one figure.
EXTRA_COLOURS = ("#882255", "#999933")
_KNOWN_MODELS = ("featherface_v1", "featherface_v2", "featherface_v2_distilled", "retinaface_mnet025",
                 "featherface_eca_cbam", "featherface_cbam_exact", "featherface_eca_cbam_parallel", "featherface_v2_ultra",
                 "featherface_v2_vit", "featherface_v2_distilled_eca_cbam_widerface")


def apply_style() -> None:
    """Set the thesis style globally (idempotent)."""
    plt.rcParams.update(_STYLE)
    plt.rcParams["axes.prop_cycle"] = matplotlib.cycler(color=list(PALETTE))


def new_figure(ncols: int = 1, nrows: int = 1, width: float = TEXT_WIDTH, aspect: float = 0.62,
               **subplot_kw):
    """A figure of the thesis width; `aspect` is height / width of the whole figure."""
    apply_style()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, width * aspect), squeeze=False,
                             constrained_layout=True, **subplot_kw)
    return fig, (axes[0, 0] if nrows == ncols == 1 else axes)


def model_style(name: str, index: int | None = None) -> dict:
    """Colour and marker of a model or run: fixed for the known models (a run keeps its model's colour:
    `featherface_v2_seed1` is FeatherFace V2's), by `index` (its position in the figure) otherwise."""
    colours = (*PALETTE, *EXTRA_COLOURS)
    key = _style_key(name)
    if key in _KNOWN_MODELS:
        index = _KNOWN_MODELS.index(key)
    elif index is None:
        index = sum(map(ord, name))
    return {"color": colours[index % len(colours)], "marker": MARKERS[index % len(MARKERS)]}


def model_styles(names) -> dict[str, dict]:
    """Styles for the models of one figure, never two alike: known models keep their fixed colour,
    the others take the colours no known model of this figure uses, in order."""
    colours = (*PALETTE, *EXTRA_COLOURS)
    names = list(dict.fromkeys(names))
    styles = {n: model_style(n) for n in names if _style_key(n) in _KNOWN_MODELS}
    taken = {s["color"] for s in styles.values()}
    free = [i for i, c in enumerate(colours) if c not in taken]
    for position, name in enumerate(n for n in names if n not in styles):
        index = free[position % len(free)] if free else position
        styles[name] = {"color": colours[index % len(colours)], "marker": MARKERS[index % len(MARKERS)]}
    return {n: styles[n] for n in names}


def _style_key(name: str) -> str:
    """The model a run's style follows: seed, WIDER FACE and fine-tuning suffixes dropped."""
    base = _SEED.sub("", name)
    for suffix in ("_not_finetuned", "_widerface"):
        # the released V1 keeps a colour of its own: it is drawn beside the V1 the study trains
        if base.endswith(suffix) and base not in ("featherface_v2_distilled_eca_cbam_widerface",
                                                  "featherface_v1_widerface"):
            base = base.removesuffix(suffix)
    return base


# Display labels: every figure and legend names a model through `pretty_name`, so one model reads the
# same everywhere (the fork's ECA-CBAM model is never also "eca cbam" or "fork's ECA-CBAM FeatherFace").
MODEL_LABELS = {
    "retinaface_mnet025": "RetinaFace-MNet0.25",
    "featherface_v1": "FeatherFace V1",
    "featherface_v2": "FeatherFace V2",
    "featherface_v2_ultra": "FeatherFace V2 Ultra",
    "featherface_v2_vit": "FeatherFace V2 ViT",
    "featherface_cbam_exact": "FeatherFace CBAM (fork)",
    "featherface_eca_cbam": "FeatherFace ECA-CBAM (fork)",
    "featherface_eca_cbam_parallel": "FeatherFace ECA-CBAM parallel (fork)",
    # the peer detectors of benchmarks/bench_peers.py
    "mtcnn": "MTCNN",
    "blazeface": "BlazeFace",
    "blazeface_full_range": "BlazeFace full-range",
    "dlib_hog": "dlib HOG",
    "haar_cascade": "Haar cascade",
}
# A one-part swap of a model (`featherface_v1_bifpn_light`): the part it puts in.
PART_LABELS = {
    "bifpn_light": "BiFPN-light",
    "ssh_grouped": "grouped SSH",
    "eca_cbam": "ECA-CBAM",
    "eca_cbam_parallel": "parallel ECA-CBAM",
    "shared_cbam": "shared CBAM",
    "shuffle_light": "light shuffle",
    "v2_heads": "V2 heads",
}
_SEED = re.compile(r"_seed(\d+)$")
_PRUNED = re.compile(r"_pruned(\d+)$")


def pretty_name(name: str, teacher: str | None = None) -> str:
    """The display label of a model or run name, the same in every figure:
    `featherface_v2_distilled_seed1` -> `FeatherFace V2 distilled, seed 1`,
    `retinaface_mnet025_widerface` -> `RetinaFace-MNet0.25 (trained on WIDER FACE)`,
    `featherface_v1_bifpn_light` -> `FeatherFace V1 + BiFPN-light`. Unknown names keep their words.
    `teacher`: the model a distilled run's name leaves implicit (the study's own teacher), named in the label."""
    name = str(name)
    seed = _SEED.search(name)
    base = _SEED.sub("", name)
    tail = f", seed {seed[1]}" if seed and int(seed[1]) else ""
    if base.endswith("_not_finetuned"):
        base, tail = base.removesuffix("_not_finetuned"), " (not fine-tuned)" + tail
    if "_distilled" in base:
        student, tag = base.split("_distilled", 1)
        tag = tag.removeprefix("_")
        label = f"{pretty_name(student)} distilled"
        if tag:
            label += f" from {pretty_name(tag if tag.startswith(tuple(MODEL_LABELS)) else 'featherface_' + tag)}"
        elif teacher:
            label += f" from {pretty_name(teacher)}"
        return label + tail
    if base.endswith("_widerface") and base not in MODEL_LABELS:
        return _qualified(pretty_name(base.removesuffix("_widerface")), "trained on WIDER FACE") + tail
    pruned = _PRUNED.search(base)
    if pruned:
        return f"{pretty_name(_PRUNED.sub('', base))} pruned {pruned[1]}%" + tail
    if base in MODEL_LABELS:
        return MODEL_LABELS[base] + tail
    model = max((m for m in MODEL_LABELS if base.startswith(m + "_")), key=len, default=None)
    if model is not None:
        part = base.removeprefix(model + "_")
        return f"{MODEL_LABELS[model]} + {PART_LABELS.get(part, part.replace('_', ' '))}" + tail
    words = base.replace("featherface", "FeatherFace").replace("retinaface", "RetinaFace").split("_")
    return " ".join(w.upper() if len(w) <= 2 and w[0] in "vV" and w[1:].isdigit() else w for w in words) + tail


def _qualified(label: str, note: str) -> str:
    """`FeatherFace ECA-CBAM (fork)` + note -> `FeatherFace ECA-CBAM (fork, note)`: one parenthesis."""
    return f"{label[:-1]}, {note})" if label.endswith(")") else f"{label} ({note})"


def close(fig) -> None:
    """Release a figure's memory once it is written (notebooks display it before this)."""
    plt.close(fig)
