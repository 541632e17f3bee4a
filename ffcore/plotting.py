"""One figure style for the thesis: readable in print (grey-scale safe markers, 9-pt text).

Every figure of the project (study, evaluation curves, benchmarks) is made through
`new_figure`, so sizes, fonts and colours agree across notebooks and every figure is a
pyplot figure that a notebook displays at the end of its cell; `model_style(name)` gives
each model the same colour and marker everywhere it appears.
"""

from __future__ import annotations

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

_KNOWN_MODELS = ("featherface_v1", "featherface_v2", "featherface_v2_distilled", "retinaface_mnet025")


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
    """Colour and marker for a model: fixed for the main models, by position otherwise."""
    if name in _KNOWN_MODELS:
        index = _KNOWN_MODELS.index(name)
    elif index is None:
        index = sum(map(ord, name))
    return {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)]}


def pretty_name(name: str) -> str:
    """`featherface_v2_distilled` -> `FeatherFace V2 distilled` for legends and tables."""
    words = name.replace("featherface", "FeatherFace").replace("retinaface", "RetinaFace").split("_")
    return " ".join(w.upper() if len(w) <= 2 and w[0] in "vV" and w[1:].isdigit() else w for w in words)


def close(fig) -> None:
    """Release a figure's memory once it is written (notebooks display it before this)."""
    plt.close(fig)
