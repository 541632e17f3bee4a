"""The committed notebooks carry the outputs of the synthetic reference run; CI executes them on
the smoke profile. `write_smoke_copies` makes the copies CI runs under nbval: each notebook
without the cell papermill injected (so the literal `parameters` cell, whose defaults are the
smoke profile, decides the run) and without papermill's run metadata. nbval then re-executes
every cell and compares only the cells marked `# NBVAL_CHECK_OUTPUT`, which involve no data,
so the synthetic run's outputs of those cells must equal the smoke run's.
"""

from __future__ import annotations

import json
from pathlib import Path

INJECTED_TAG = "injected-parameters"


def smoke_copy(notebook: dict) -> dict:
    """The notebook without papermill's injected parameters cell and run metadata."""
    copy = json.loads(json.dumps(notebook))
    copy["cells"] = [c for c in copy["cells"] if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    copy.get("metadata", {}).pop("papermill", None)
    for cell in copy["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
    return copy


def write_smoke_copies(source_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write `smoke_copy` of every `NN_*.ipynb` of `source_dir` into `out_dir` (replaced)."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    notebooks = sorted(source_dir.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no study notebooks (NN_*.ipynb) in {source_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.ipynb"):
        stale.unlink()
    written = []
    for path in notebooks:
        target = out_dir / path.name
        target.write_text(json.dumps(smoke_copy(json.loads(path.read_text())), indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written
