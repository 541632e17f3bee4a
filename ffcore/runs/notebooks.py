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
DECLARED_TAG = "declared-notebook"


def declaring_cell(name: str) -> dict:
    """A first cell that names the notebook for the provenance of what it writes: a copy run by nbval
    (or any kernel outside `execute_notebook`, which sets the same variable) would otherwise write
    sidecars without their notebook, and the chapter refuses those."""
    from ffcore.report.provenance import NOTEBOOK_ENV

    return {"cell_type": "code", "metadata": {"tags": [DECLARED_TAG]}, "execution_count": None, "outputs": [],
            "source": f"import os\nos.environ[{NOTEBOOK_ENV!r}] = {name!r}   # the notebook these artifacts come from"}


def smoke_copy(notebook: dict) -> dict:
    """The notebook without papermill's injected parameters cell and run metadata."""
    copy = json.loads(json.dumps(notebook))
    copy["cells"] = [c for c in copy["cells"] if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    copy.get("metadata", {}).pop("papermill", None)
    for cell in copy["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
    return copy


def write_smoke_copies(source_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write `smoke_copy` of every `NN_*.ipynb` of `source_dir` into `out_dir` (replaced), each opening
    with its `declaring_cell`."""
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
        copy = smoke_copy(json.loads(path.read_text()))
        copy["cells"].insert(0, declaring_cell(path.stem))
        target.write_text(json.dumps(copy, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written


# ------------------------------------------------------------------------------- the study's run

NOTEBOOKS = ("01_baseline", "02_v2_architecture", "03_distillation", "04_ablations", "05_benchmarks")
KERNEL = "python3"


def notebook_dir() -> Path:
    from ffcore.paths import NOTEBOOK_DIR

    return NOTEBOOK_DIR


def select_notebooks(only: list[str] | None, prog: str = "ffcore study run") -> list[str]:
    """The notebooks to run, in the study's order: all, or those `only` names by number or name prefix."""
    if not only:
        return list(NOTEBOOKS)
    chosen = []
    for key in only:
        matches = [name for name in NOTEBOOKS if name.startswith(key) or name == key.removesuffix(".ipynb")]
        if not matches:
            raise SystemExit(f"{prog}: --only {key!r} matches no notebook; choose from {', '.join(NOTEBOOKS)}")
        chosen.extend(m for m in matches if m not in chosen)
    return [name for name in NOTEBOOKS if name in chosen]


def describe_failure(name: str, error: Exception) -> str:
    """`notebook X failed in cell N: <first source line>` plus the exception, from papermill's error."""
    cell_index = getattr(error, "cell_index", None)
    exec_count = getattr(error, "exec_count", None)
    source = (getattr(error, "source", "") or "").strip().splitlines()
    first_line = source[0] if source else ""
    ename, evalue = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
    where = f"cell {cell_index}" if cell_index is not None else "an unknown cell"
    if exec_count is not None:
        where += f" (execution count {exec_count})"
    return f"notebook {name}.ipynb failed in {where}: {first_line}\n  {ename}: {evalue}"


def execute_notebook(name: str, out_dir: Path, parameters: dict) -> None:
    """Run one study notebook with papermill into `out_dir` (raises papermill's execution error)."""
    import os

    import papermill as pm

    os.environ["FFCORE_NOTEBOOK"] = name   # the kernel inherits it: every sidecar names its notebook
    source = notebook_dir()
    pm.execute_notebook(str(source / f"{name}.ipynb"), str(Path(out_dir) / f"{name}.ipynb"), parameters=parameters,
                        kernel_name=KERNEL, cwd=str(source), progress_bar=False, log_output=False)
