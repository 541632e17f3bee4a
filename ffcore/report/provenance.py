"""Every table and figure is written through here, with a sidecar JSON saying where it came from.

The sidecar records the git commit (and whether the code differs from it: `git_state`, judged on
`CODE_PATHS` and the notebooks' source cells, with a hash of the difference), the profile, the
dataset and a hash of its manifest, checkpoint hashes (and the commits they were trained at when
known), seeds and preset when the caller passes them, the notebook that wrote it (`writing_notebook`),
library versions, CPU / GPU and threads, and the time. Artifacts computed on synthetic data say
"synthetic data" on their face (a caption line in tables, a stamp on figures). A table's sidecar
also keeps its caption and printed layout, so its LaTeX can be redone from the CSV
(`render_table_file`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ffcore.paths import NOTEBOOK_DIR, REPO_ROOT

SYNTHETIC = "synthetic"
WIDERFACE = "widerface"
NO_DATA = "none"          # computed from the architecture alone (parameters, FLOPs, shapes)
REAL_PHOTOS = "real photos"   # the shared real photographs (no annotations): detections, attention, peers
REPORTED = "reported"         # figures their authors report (with file, commit, source), not measured here
# Written by the synthetic generator at the root of every tree it makes: a tree carrying it is
# synthetic wherever it is copied (data/widerface included).
SYNTHETIC_MARKER = "synth_manifest.json"
# Manifest entries that say how long generating took, not what was generated: left out of its hash,
# so two identical datasets hash alike.
TIMING_MANIFEST_KEYS = ("generation_seconds",)


def dataset_of(data_root: str | Path, declared: str) -> str:
    """The dataset an artifact really used: synthetic when the tree carries the generator's marker."""
    return SYNTHETIC if (Path(data_root) / SYNTHETIC_MARKER).is_file() else declared


# What "the code" is for the dirty flag: a change anywhere else (results, READMEs, docs) does not
# change what an artifact was computed by. Notebooks count by their source cells only: their
# outputs change with every run.
CODE_PATHS = ("ffcore", "run_all.py", "requirements.txt", "pyproject.toml")
# The packages whose versions decide the numbers (read from their metadata: nothing is imported).
VERSIONED_PACKAGES = ("torch", "torchvision", "onnxruntime", "numpy")
# Annotation files that identify a WIDER-format tree when it has no synthetic manifest.
ANNOTATION_FILES = ("train/label.txt", "val/label.txt", "wider_face_split/wider_face_val_bbx_gt.txt")
# Set by whoever runs a notebook (run_all.py) so each artifact names the notebook that wrote it.
NOTEBOOK_ENV = "FFCORE_NOTEBOOK"
# Set by Jupyter Server in a kernel it starts for a notebook: the notebook's path. A study notebook
# opened in JupyterLab thus names itself without run_all.py.
JUPYTER_SESSION_ENV = "JPY_SESSION_NAME"


def writing_notebook() -> str | None:
    """The notebook writing an artifact: the name run_all.py (or a smoke copy's first cell) declared,
    else the stem of the notebook Jupyter Server runs this kernel for, else None (a script)."""
    declared = os.environ.get(NOTEBOOK_ENV)
    if declared:
        return declared
    session = os.environ.get(JUPYTER_SESSION_ENV, "")
    return Path(session).stem if session.endswith(".ipynb") else None


def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def notebook_sources(notebook_json: str) -> list[str]:
    """The source of every cell of a notebook: outputs, execution counts, metadata and the cell papermill
    injects (a run's parameters, not code) left out."""
    cells = json.loads(notebook_json).get("cells", [])
    return ["".join(c.get("source", "")) if isinstance(c.get("source"), list) else c.get("source", "")
            for c in cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def code_diff(root: Path = REPO_ROOT) -> str | None:
    """The uncommitted change to the code (`CODE_PATHS`, the notebooks' source cells), as text;
    "" when there is none, None outside a git checkout."""
    if _git(root, "rev-parse", "HEAD") is None:
        return None
    parts = [_git(root, "diff", "HEAD", "--", *CODE_PATHS) or ""]
    untracked = (_git(root, "ls-files", "--others", "--exclude-standard", "--", *CODE_PATHS) or "").split()
    for name in sorted(untracked):
        parts.append(f"untracked {name}\n{(root / name).read_text(errors='replace')}")
    changed = (_git(root, "diff", "HEAD", "--name-only", "--", f"{NOTEBOOK_DIR.relative_to(REPO_ROOT).as_posix()}/*.ipynb") or "").split()
    for name in sorted(changed):
        committed = _git(root, "show", f"HEAD:{name}")
        now = (root / name).read_text() if (root / name).is_file() else None
        before_cells = notebook_sources(committed) if committed else None
        after_cells = notebook_sources(now) if now else None
        if before_cells != after_cells:
            parts.append(f"notebook {name}\n{json.dumps([before_cells, after_cells])}")
    return "".join(parts)


def git_state(root: Path = REPO_ROOT) -> dict:
    """{"commit", "dirty", "diff_sha256"} of the repository holding the code. Dirty means the code
    (`CODE_PATHS`, the notebooks' source cells) differs from the commit; `diff_sha256` then
    identifies that difference (two artifacts with the same commit and hash ran the same code)."""
    commit = _git(root, "rev-parse", "HEAD")
    diff = code_diff(root)
    if commit is None or diff is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}
    return {"commit": commit.strip(), "dirty": bool(diff),
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None}


@functools.lru_cache(maxsize=1)
def environment() -> dict:
    """Library versions, Python, CPU and thread count of this process (cached: they do not change).

    Versions come from package metadata, so recording them imports nothing heavy; the GPU is named
    only when torch is already loaded (a CPU-only artifact has no reason to initialise CUDA)."""
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    cpu = platform.processor() or None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"python": platform.python_version(), "platform": platform.platform(), "versions": versions,
            "cpu": cpu, "cpu_count": os.cpu_count()}


def runtime_threads_and_gpu() -> dict:
    """Threads torch uses and the GPU's name, when torch is loaded already (never imported here)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {"torch_threads": None, "gpu": None}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"torch_threads": torch.get_num_threads(), "gpu": gpu}


def manifest_digest(path: str | Path) -> str:
    """SHA-256 prefix of a synthetic manifest's content without its timings (`TIMING_MANIFEST_KEYS`):
    the same dataset generated twice, at any speed, gets the same digest."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a readable dataset manifest ({exc}); regenerate the dataset") from exc
    content = {key: value for key, value in manifest.items() if key not in TIMING_MANIFEST_KEYS}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    if Path(path).name == SYNTHETIC_MARKER:
        return manifest_digest(path)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def dataset_fingerprint(data_root: str | Path | None) -> dict | None:
    """{"file": ..., "sha256": ...} of the data tree's manifest (synth_manifest.json) or, for a WIDER
    FACE tree, its annotation files; None when there is no tree or none of them exists."""
    if data_root is None:
        return None
    root = Path(data_root)
    candidates = [SYNTHETIC_MARKER] if (root / SYNTHETIC_MARKER).is_file() else \
        [name for name in ANNOTATION_FILES if (root / name).is_file()]
    if not candidates:
        return None
    digests = []
    for name in candidates:
        stat = (root / name).stat()
        digests.append(_file_digest(str(root / name), stat.st_size, stat.st_mtime_ns))
    combined = digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()[:16]
    return {"file": ", ".join(candidates), "sha256": combined}


@dataclass
class Provenance:
    """Where an artifact came from. `dataset` is "synthetic", "widerface", "real photos" (the shared
    photographs, no annotations) or "none" (no data involved).

    `seeds`, `preset` (a training recipe: {"name": ..., **values}) and `data_root` are recorded when
    the caller knows them; `checkpoint_commits` maps a checkpoint's name to the commit it was trained
    at (the checkpoint payload's "git_commit"), for the checkpoints that carry one."""

    profile: str
    dataset: str
    checkpoints: dict[str, str] = field(default_factory=dict)   # name -> sha256 prefix
    notes: dict[str, Any] = field(default_factory=dict)         # scale, device, settings...
    seeds: list[int] | None = None
    preset: dict[str, Any] | None = None
    data_root: str | None = None
    checkpoint_commits: dict[str, str] = field(default_factory=dict)

    @property
    def is_synthetic(self) -> bool:
        return self.dataset == SYNTHETIC

    @property
    def uses_data(self) -> bool:
        return self.dataset != NO_DATA

    def label(self) -> str:
        """The line printed on the artifact itself."""
        if not self.uses_data:
            return "no data: computed from the architecture"
        data = {SYNTHETIC: "SYNTHETIC DATA (not WIDER FACE)",
                REAL_PHOTOS: "REAL PHOTOS (unannotated; not a WIDER FACE evaluation)",
                REPORTED: "REPORTED BY THEIR AUTHORS (WIDER FACE val; not measured here)"}.get(self.dataset, "WIDER FACE")
        return f"{data} | profile {self.profile}"

    def record(self, artifact: str, headline: str | None = None, **extra) -> dict:
        fields = asdict(self)
        data_root = fields.pop("data_root")
        return {"artifact": artifact, "headline": headline, **fields, "label": self.label(),
                "notebook": writing_notebook(),
                "dataset_manifest": dataset_fingerprint(data_root) if self.uses_data else None,
                "git": git_state(), "environment": {**environment(), **runtime_threads_and_gpu()},
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra}

    @classmethod
    def from_record(cls, record: dict) -> "Provenance":
        """The provenance a sidecar recorded (for re-rendering an artifact without recomputing it)."""
        try:
            return cls(profile=record["profile"], dataset=record["dataset"],
                       checkpoints=record.get("checkpoints") or {}, notes=record.get("notes") or {},
                       seeds=record.get("seeds"), preset=record.get("preset"),
                       checkpoint_commits=record.get("checkpoint_commits") or {})
        except KeyError as exc:
            raise KeyError(f"sidecar of {record.get('artifact', '?')} lacks {exc}") from exc


def _write_sidecar(path: Path, provenance: Provenance, headline: str | None, **extra) -> Path:
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(provenance.record(path.name, headline, **extra), indent=2, default=str) + "\n")
    return sidecar


def table_caption(caption: str, provenance: Provenance) -> str:
    """The printed caption: the caller's text and the data source with the profile."""
    return f"{caption} [{provenance.label()}]" if caption else provenance.label()


def write_table(table, out_dir: str | Path, name: str, provenance: Provenance, caption: str = "",
                headline: str | None = None, float_format: str = "%.4g",
                columns: list[str] | None = None, max_columns: int | None = None) -> dict[str, Path]:
    """Write a pandas DataFrame as CSV (every column), LaTeX (`\\input`-ready, the printed choice of
    columns: `ffcore.report.tex.TexLayout`) and a sidecar JSON that keeps the caption and that choice, so
    `render_table_file` can redo the LaTeX from the CSV alone."""
    from ffcore.report.tex import MAX_COLUMNS, TexLayout, frame_rows, render_table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{name}.csv"
    tex_path = out_dir / f"{name}.tex"
    layout = TexLayout(columns=tuple(columns) if columns else None, max_columns=max_columns or MAX_COLUMNS,
                       float_format=float_format)
    rows, names = frame_rows(table)
    latex = render_table(rows, names, name, table_caption(caption, provenance), layout)   # fails before writing
    with open(csv_path, "w") as handle:
        handle.write(f"# {provenance.label()}\n")
        table.to_csv(handle, index=False, float_format=float_format)
    tex_path.write_text(latex)
    _write_sidecar(csv_path, provenance, headline, caption=caption, tex=layout.as_record())
    return {"csv": csv_path, "tex": tex_path, "json": csv_path.with_suffix(".json")}


def _caption_of_old_tex(tex_path: Path, label: str) -> str:
    """The caller's caption from a .tex written before sidecars kept it (its `\\caption{...}`, label removed)."""
    text = tex_path.read_text() if tex_path.is_file() else ""
    start = text.find("\\caption{")
    if start < 0:
        return ""
    depth, i = 1, start + len("\\caption{")
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    caption = text[start + len("\\caption{"): i - 1]
    return caption.removesuffix(f"[{label}]").removesuffix(label).strip()


def render_table_file(csv_path: str | Path) -> Path:
    """Rewrite a table's .tex from its CSV and sidecar JSON (no recomputation); returns the .tex path.

    Sidecars written before the caption was recorded: the caption is read back from the old .tex."""
    from ffcore.report.tables import read_table_csv
    from ffcore.report.tex import TexLayout, frame_rows, render_table

    csv_path = Path(csv_path)
    sidecar = csv_path.with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{csv_path} has no sidecar {sidecar.name}; rerun the notebook that writes it")
    record = json.loads(sidecar.read_text())
    provenance = Provenance.from_record(record)
    tex_path = csv_path.with_suffix(".tex")
    if "caption" not in record:
        # kept from now on: the .tex about to be written holds the escaped caption, not the text
        record["caption"] = _caption_of_old_tex(tex_path, provenance.label())
        sidecar.write_text(json.dumps(record, indent=2, default=str) + "\n")
    caption = record["caption"]
    rows, names = frame_rows(read_table_csv(csv_path))
    tex_path.write_text(render_table(rows, names, csv_path.stem, table_caption(caption, provenance),
                                     TexLayout.from_record(record.get("tex"))))
    return tex_path


def stamp_figure(fig, provenance: Provenance) -> None:
    """Print the provenance label on the figure itself (red when the data is synthetic).

    A figure that involves no data (an architecture drawing) carries no stamp."""
    if not provenance.uses_data:
        return
    # Just below the figure area: never covers a legend; bbox_inches="tight" keeps it in the file.
    fig.text(0.99, -0.01, provenance.label(), ha="right", va="top", fontsize=7,
             color="#b00020" if provenance.is_synthetic else "#444444", alpha=0.9)


def write_figure(fig, out_dir: str | Path, name: str, provenance: Provenance,
                 headline: str | None = None, dpi: int = 150) -> dict[str, Path]:
    """Save a matplotlib figure as PDF and PNG, stamped with its provenance, plus a sidecar JSON."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp_figure(fig, provenance)
    pdf_path, png_path = out_dir / f"{name}.pdf", out_dir / f"{name}.png"
    fig.savefig(pdf_path, bbox_inches="tight")
    fig.savefig(png_path, dpi=dpi, bbox_inches="tight")
    _write_sidecar(pdf_path, provenance, headline)
    return {"pdf": pdf_path, "png": png_path, "json": pdf_path.with_suffix(".json")}
