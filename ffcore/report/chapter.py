"""The results chapter of a profile, built from what the notebooks wrote (nothing typed by hand).

`write_chapter(profile)` writes into thesis_figures/<profile>/:

    preamble.tex   the packages the generated tables and figures need (`ffcore.report.tex.PREAMBLE_PACKAGES`)
    numbers.tex    one macro per cited number; numbers.json says where each comes from
    results.tex    the chapter body: one section per notebook, every table (\\input) and figure
                   (\\includegraphics) that notebook wrote, with its "what this shows" headline,
                   then a provenance appendix (commits, checkpoints, environment) from the sidecars
    chapter.tex    a standalone document around results.tex (`build_chapter` compiles it)

Which notebook wrote an artifact is read, in order, from: the sidecar's "notebook" (recorded when
the runner sets `ffcore.report.provenance.NOTEBOOK_ENV`); the time windows of the executed notebooks
(papermill's start and end times in results/<profile>/notebooks/, or in notebooks/ when their
injected profile is this one); a notebook whose source names the artifact in a string. What none of
them places goes to a last section, "Other artifacts", so nothing is left out.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ffcore.paths import NOTEBOOK_DIR, figures_dir, results_dir
from ffcore.report.provenance import NO_DATA, REAL_PHOTOS, SYNTHETIC, render_table_file
from ffcore.report.numbers import cited_numbers, macro_name, write_numbers
from ffcore.report.tex import PREAMBLE_PACKAGES, escape

OTHER = "other"
APT_LINE = "apt-get install -y texlive-latex-recommended texlive-latex-extra latexmk"
# The .sty files the preamble loads, checked before compiling so a missing one is named.
REQUIRED_STYLES = ("booktabs.sty", "longtable.sty", "array.sty", "graphicx.sty", "caption.sty", "hyperref.sty",
                   "lmodern.sty", "geometry.sty", "fontenc.sty", "placeins.sty", "adjustbox.sty", "tabularx.sty", "xltabular.sty")
DATA_SOURCES = {SYNTHETIC: "SYNTHETIC data", REAL_PHOTOS: "REAL PHOTOS (unannotated)", NO_DATA: "no data"}


class ThesisToolsMissing(RuntimeError):
    """latexmk, pdflatex or a LaTeX package is not installed; the message gives the install line."""


@dataclass
class Artifact:
    kind: str            # "table" or "figure"
    name: str
    record: dict
    path: Path           # .csv of a table, .pdf of a figure (it may be missing: the .png then)

    @property
    def created(self) -> str:
        return self.record.get("created", "")

    @property
    def headline(self) -> str:
        return self.record.get("headline") or ""

    @property
    def data_source(self) -> str:
        return DATA_SOURCES.get(self.record.get("dataset", ""), "WIDER FACE")


@dataclass
class Notebook:
    stem: str                       # "01_baseline"
    title: str                      # from its first heading
    sources: list[str] = field(default_factory=list)


def notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Notebook]:
    """The study notebooks (NN_*.ipynb), titled by their first markdown heading."""
    found = []
    for path in sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]
        title = path.stem
        for cell, source in zip(cells, sources):
            heading = re.match(r"#\s+(.+)", source) if cell["cell_type"] == "markdown" else None
            if heading:
                title = heading.group(1).strip()
                break
        found.append(Notebook(path.stem, title, sources))
    if not found:
        raise FileNotFoundError(f"no study notebooks (NN_*.ipynb) in {notebook_dir}")
    return found


def artifacts(profile: str) -> list[Artifact]:
    found = []
    for kind, folder, suffix in (("table", results_dir() / profile / "tables", ".csv"),
                                 ("figure", figures_dir() / profile, ".pdf")):
        for sidecar in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            if sidecar.name == "numbers.json":
                continue
            try:
                record = json.loads(sidecar.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"unreadable provenance sidecar {sidecar}: {exc}") from exc
            found.append(Artifact(kind, sidecar.stem, record, sidecar.with_suffix(suffix)))
    return sorted(found, key=lambda a: (a.created, a.name))


def _time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text)


def notebook_windows(profile: str, notebook_dir: Path = NOTEBOOK_DIR) -> dict[str, tuple[_dt.datetime, _dt.datetime]]:
    """notebook stem -> (start, end) of its last papermill execution for this profile."""
    windows = {}
    for folder in (notebook_dir, results_dir() / profile / "notebooks"):   # the run's own copies win
        for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")) if folder.is_dir() else ():
            papermill = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
            if (papermill.get("parameters") or {}).get("profile") != profile:
                continue
            if papermill.get("start_time") and papermill.get("end_time"):
                windows[path.stem] = (_time(papermill["start_time"]), _time(papermill["end_time"]))
    return windows


def attribute(artifact: Artifact, books: list[Notebook], windows: dict) -> str:
    """The stem of the notebook that wrote `artifact` (see the module docstring), or OTHER."""
    stems = {b.stem for b in books}
    recorded = artifact.record.get("notebook")
    if recorded in stems:
        return recorded
    if artifact.created:
        created = _time(artifact.created)     # second resolution: compare against the window's second
        for stem, (start, end) in windows.items():
            if start.replace(microsecond=0) <= created <= end:
                return stem
    quoted = re.compile(rf"[\"']{re.escape(artifact.name)}[\"']")
    for book in books:
        if any(quoted.search(source) for source in book.sources):
            return book.stem
    return OTHER


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _table_block(artifact: Artifact, chapter_dir: Path, macros: dict[str, list[str]]) -> list[str]:
    tex = artifact.path.with_suffix(".tex")
    lines = [f"Table~\\ref{{tab:{artifact.name}}} ({escape(artifact.data_source)}) is "
             f"\\texttt{{{escape(artifact.name)}}}."]
    lines += macros.get(artifact.name, [])
    if artifact.headline:
        lines.append(f"\\emph{{What this shows:}} {escape(artifact.headline)}.")
    lines += ["", f"\\input{{{_relative(tex.with_suffix(''), chapter_dir)}}}", r"\FloatBarrier", ""]
    return lines


def _figure_block(artifact: Artifact, profile: str) -> list[str]:
    # no extension: pdflatex takes the vector PDF, or the PNG where only that was kept
    caption = f"{artifact.headline or artifact.name} [{artifact.data_source} | profile {profile}]"
    return [f"Figure~\\ref{{fig:{artifact.name}}} is \\texttt{{{escape(artifact.name)}}}.", "",
            r"\begin{figure}[htbp]", r"\centering",
            f"\\includegraphics[width=\\linewidth,height=0.6\\textheight,keepaspectratio]{{{artifact.name}}}",
            f"\\caption{{{escape(caption)}}}", f"\\label{{fig:{artifact.name}}}", r"\end{figure}", r"\FloatBarrier", ""]


def _cited_sentences(profile: str) -> dict[str, list[str]]:
    """Per table, the sentences citing its numbers through their macros (AP tables, differences)."""
    by_row: dict[tuple[str, str], dict[str, str]] = {}
    for number in cited_numbers(profile):
        if number.artifact.startswith("tables/"):
            # "{}" ends the macro's name without eating the space after it
            by_row.setdefault((Path(number.artifact).stem, number.row), {})[number.column] = f"\\{number.macro}{{}}"
    sentences: dict[str, list[str]] = {}
    for (table, row), cols in by_row.items():
        if "AP hard %" in cols:
            text = (f"\\texttt{{{escape(row)}}} reaches AP {cols['AP easy %']} / {cols['AP medium %']} / "
                    f"{cols['AP hard %']} (easy / medium / hard, \\%)")
            if "dhard AP pts" in cols:
                text += f", {cols['dhard AP pts']} points on hard against its reference"
            sentences.setdefault(table, []).append(text + ".")
        elif "dhard AP pts" in cols:
            text = (f"\\texttt{{{escape(row)}}}: {cols['deasy AP pts']} / {cols['dmedium AP pts']} / "
                    f"{cols['dhard AP pts']} AP points (easy / medium / hard)")
            if "dhard CI low" in cols:
                text += f", hard interval [{cols['dhard CI low']}, {cols['dhard CI high']}]"
            sentences.setdefault(table, []).append(text + ".")
    return sentences


def _provenance_appendix(items: list[Artifact]) -> list[str]:
    commits: dict[str, int] = {}
    checkpoints: dict[str, str] = {}
    environments: dict[str, int] = {}
    manifests: dict[str, int] = {}
    for a in items:
        git = a.record.get("git") or {}
        key = (git.get("commit") or "unknown")[:12]
        if git.get("dirty"):
            key += " + uncommitted change" + (f" {git['diff_sha256']}" if git.get("diff_sha256") else "")
        commits[key] = commits.get(key, 0) + 1
        commits_at = a.record.get("checkpoint_commits") or {}
        for name, digest in (a.record.get("checkpoints") or {}).items():
            trained_at = commits_at.get(name)
            checkpoints[name] = digest + (f" (trained at {trained_at[:12]})" if trained_at else "")
        env = a.record.get("environment")
        if env:
            versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items() if v)
            text = (f"Python {env.get('python')}; {versions}; CPU {env.get('cpu')} ({env.get('cpu_count')} cores"
                    f"{', torch threads ' + str(env['torch_threads']) if env.get('torch_threads') else ''})"
                    f"{'; GPU ' + env['gpu'] if env.get('gpu') else ''}")
        else:
            text = f"not recorded (device {(a.record.get('notes') or {}).get('device', 'unknown')})"
        environments[text] = environments.get(text, 0) + 1
        manifest = a.record.get("dataset_manifest")
        if manifest:
            label = f"{manifest['file']} sha256 {manifest['sha256']}"
            manifests[label] = manifests.get(label, 0) + 1

    def itemize(title: str, counts: dict[str, int]) -> list[str]:
        if not counts:
            return [f"\\paragraph{{{title}}} not recorded by these artifacts' sidecars.", ""]
        return [f"\\paragraph{{{title}}}", r"\begin{itemize}",
                *[f"\\item {escape(k)} ({n} artifacts)" for k, n in sorted(counts.items())], r"\end{itemize}", ""]

    created = sorted(a.created for a in items if a.created)
    lines = [r"\section*{Provenance}",
             f"Read from the sidecar JSON beside each of the {len(items)} artifacts"
             + (f", written between {escape(created[0])} and {escape(created[-1])}." if created else "."), ""]
    lines += itemize("Code (commit)", commits)
    lines += itemize("Environment", environments)
    lines += itemize("Dataset manifest", manifests)
    lines.append(r"\paragraph{Checkpoints (sha256 prefix)}")
    if checkpoints:
        lines += [r"\begin{itemize}", *[f"\\item {escape(k)}: {escape(v)}" for k, v in sorted(checkpoints.items())],
                  r"\end{itemize}"]
    else:
        lines.append("none: every artifact was computed without a trained model.")
    return lines


def render_tables(profile: str) -> list[Path]:
    """Redo the .tex of every table of the profile from its CSV and sidecar (no recomputation)."""
    tables = results_dir() / profile / "tables"
    if not tables.is_dir():
        raise FileNotFoundError(f"no tables for profile {profile!r} in {tables}; run "
                                f"`python run_all.py --profile {profile}` first")
    return [render_table_file(csv) for csv in sorted(tables.glob("*.csv"))]


def _chapter_body(profile: str, chapter_dir: Path) -> list[str]:
    from ffcore.runs.profiles import get_profile

    run_profile = get_profile(profile)
    books = notebooks()
    windows = notebook_windows(profile)
    items = artifacts(profile)
    if not items:
        raise FileNotFoundError(f"profile {profile!r} has no artifacts in {results_dir() / profile / 'tables'} or "
                                f"{figures_dir() / profile}; run `python run_all.py --profile {profile}` first")
    sections: dict[str, list[Artifact]] = {}
    for item in items:
        sections.setdefault(attribute(item, books, windows), []).append(item)
    sentences = _cited_sentences(profile)
    lines = [f"% generated by ffcore (ffcore thesis --profile {profile}); do not edit",
             f"\\chapter{{Results: profile {escape(profile)}}}", "",
             f"Profile \\texttt{{{escape(profile)}}}: {escape(run_profile.description)}."]
    if run_profile.is_synthetic:
        lines.append(r"\textbf{Every accuracy number in this chapter was computed on SYNTHETIC DATA, not WIDER "
                     r"FACE}: it compares the models on synthetic faces and says nothing about real faces.")
    duration = macro_name("run minutes", "total")
    if any(n.macro == duration for n in cited_numbers(profile)):
        lines.append(f"The run that produced these artifacts took \\{duration}~minutes.")
    lines.append("")
    for book in [*books, Notebook(OTHER, "Other artifacts")]:
        part = sections.get(book.stem, [])
        if book.stem == OTHER and not part:
            continue
        lines += [f"\\section{{{escape(book.title)}}}", ""]
        if not part:
            lines += [f"Notebook \\texttt{{{escape(book.stem)}}} has written no table or figure for this profile yet "
                      f"(\\texttt{{python run\\_all.py -{{}}-profile {escape(profile)} -{{}}-only {book.stem[:2]}}}).", ""]
            continue
        where = f"notebook \\texttt{{{escape(book.stem)}}}" if book.stem != OTHER else "no known notebook"
        lines += [f"This section collects the {sum(a.kind == 'table' for a in part)} tables and "
                  f"{sum(a.kind == 'figure' for a in part)} figures written by {where}, in the order they "
                  "were written.", ""]
        for item in part:
            lines += _table_block(item, chapter_dir, sentences) if item.kind == "table" else _figure_block(item, profile)
        lines.append(r"\clearpage")
    lines += [r"\appendix", *_provenance_appendix(items)]
    return lines


def write_chapter(profile: str, rerender_tables: bool = True) -> dict[str, Path]:
    """Write preamble.tex, numbers.tex/.json, results.tex and chapter.tex into thesis_figures/<profile>/."""
    chapter_dir = figures_dir() / profile
    chapter_dir.mkdir(parents=True, exist_ok=True)
    if rerender_tables:
        render_tables(profile)
    written = write_numbers(profile, chapter_dir)
    preamble = chapter_dir / "preamble.tex"
    preamble.write_text("% generated by ffcore: the packages the study's tables and figures need\n"
                        + "\n".join(PREAMBLE_PACKAGES) + "\n")
    body = chapter_dir / "results.tex"
    body.write_text("\n".join(_chapter_body(profile, chapter_dir)) + "\n")
    chapter = chapter_dir / "chapter.tex"
    chapter.write_text("\n".join([
        "% generated by ffcore: a standalone document around results.tex (\\input results.tex in the thesis)",
        r"\documentclass[11pt,a4paper]{report}", r"\usepackage[margin=2.5cm]{geometry}", r"\input{preamble}",
        r"\input{numbers}", r"\graphicspath{{./}}", r"\begin{document}", r"\input{results}", r"\end{document}", ""]))
    return {**written, "preamble": preamble, "results": body, "chapter": chapter}


def missing_tools() -> list[str]:
    """What building the chapter needs and this machine lacks (programs and .sty files)."""
    missing = [tool for tool in ("latexmk", "pdflatex") if shutil.which(tool) is None]
    if shutil.which("kpsewhich") is None:
        return missing + ["kpsewhich (TeX Live)"]
    for style in REQUIRED_STYLES:
        found = subprocess.run(["kpsewhich", style], capture_output=True, text=True, check=False).stdout.strip()
        if not found:
            missing.append(style)
    return missing


def build_chapter(profile: str) -> Path:
    """Compile thesis_figures/<profile>/chapter.tex with latexmk; returns chapter.pdf."""
    missing = missing_tools()
    if missing:
        raise ThesisToolsMissing(f"building the chapter needs {', '.join(missing)}; install TeX with "
                                 f"`{APT_LINE}` (as root)")
    chapter_dir = figures_dir() / profile
    if not (chapter_dir / "chapter.tex").is_file():
        raise FileNotFoundError(f"{chapter_dir / 'chapter.tex'} does not exist; write it first (ffcore thesis)")
    result = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "chapter.tex"],
                            cwd=chapter_dir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        errors = [line for line in result.stdout.splitlines() if line.startswith("!") or "Error" in line]
        raise RuntimeError(f"latexmk failed on {chapter_dir / 'chapter.tex'} (log: {chapter_dir / 'chapter.log'}):\n"
                           + "\n".join(errors[:10] or result.stdout.splitlines()[-20:]))
    return chapter_dir / "chapter.pdf"
