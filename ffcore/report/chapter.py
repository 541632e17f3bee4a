"""The results chapter of a profile, built from what the notebooks wrote (nothing typed by hand).

`write_chapter(profile)` writes into thesis_figures/<profile>/:

    preamble.tex   the packages the chapter needs (`ffcore.report.tex.PREAMBLE_PACKAGES`)
    numbers.tex    one macro per cited number; numbers.json says where each comes from
    results.tex    the chapter: a summary table of the headline numbers and verdicts, then one section per
                   question of the thesis (`ffcore.report.chapter_sections.QUESTIONS`), each opening with
                   a paragraph generated from its tables, then its tables (\\input) and figures
    appendix.tex   a chapter for the thesis's appendix: every training run in one table, the seed
                   documents' claims, the data, and the provenance (commits, checkpoints, environment)
    chapter.tex    a standalone document around both (`build_chapter` compiles it)
    training_runs.tex, headline.tex   the two tables the chapter builds from several CSVs

results.tex and appendix.tex have no preamble: a thesis in any folder \\inputs them after defining
`\\FFChapterDir` as the path of thesis_figures/<profile>/ (every file they read is reached through
it; thesis_figures/README.md shows the lines).

Which section an artifact goes to is declared (`chapter_sections.SECTION_OF`), and which notebook
wrote it is its sidecar's "notebook": an artifact whose sidecar names none is an error, not a guess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ffcore.paths import NOTEBOOK_DIR, figures_dir, results_dir
from ffcore.report.provenance import NO_DATA, REAL_PHOTOS, SYNTHETIC, Provenance, render_table_file, table_caption
from ffcore.report.tables import read_table_csv
from ffcore.report import chapter_sections as sections_map
from ffcore.report.numbers import EMPTY_CACHES_MACRO, cited_numbers, macro_name, row_column, write_numbers
from ffcore.report.tex import PREAMBLE_PACKAGES, TexLayout, escape, frame_rows, render_table

CHAPTER_DIR_MACRO = "FFChapterDir"
APT_LINE = "apt-get install -y texlive-latex-recommended texlive-latex-extra latexmk"
# The .sty files the preamble loads, checked before compiling so a missing one is named.
REQUIRED_STYLES = ("booktabs.sty", "longtable.sty", "array.sty", "graphicx.sty", "caption.sty", "hyperref.sty",
                   "lmodern.sty", "geometry.sty", "fontenc.sty", "placeins.sty", "adjustbox.sty", "tabularx.sty", "xltabular.sty")
DATA_SOURCES = {SYNTHETIC: "SYNTHETIC data", REAL_PHOTOS: "REAL PHOTOS (unannotated)", NO_DATA: "no data"}
TRAINING_COLUMNS = ("run", "planned epochs", "epochs run", "best epoch", "final task loss", "train time s", "teacher")


class ThesisToolsMissing(RuntimeError):
    """latexmk, pdflatex or a LaTeX package is not installed; the message gives the install line."""


@dataclass
class Artifact:
    kind: str            # "table" or "figure"
    name: str
    record: dict
    path: Path           # .csv of a table, .pdf of a figure (it may be missing: the .png then)
    sidecar: Path

    @property
    def created(self) -> str:
        return self.record.get("created", "")

    @property
    def data_source(self) -> str:
        return DATA_SOURCES.get(self.record.get("dataset", ""), "WIDER FACE")

    @property
    def notebook(self) -> str:
        """The notebook that wrote it, as its sidecar declares (an existing notebooks/NN_*.ipynb)."""
        stem = self.record.get("notebook")
        if not stem:
            raise ValueError(f"{self.sidecar} names no \"notebook\": every artifact's sidecar declares the notebook "
                             "that wrote it (rerun that notebook through run_all.py to record it)")
        if not (NOTEBOOK_DIR / f"{stem}.ipynb").is_file():
            raise ValueError(f"{self.sidecar}: \"notebook\" is {stem!r}, which is not a notebook in {NOTEBOOK_DIR}")
        return stem

    @property
    def section(self) -> str:
        return sections_map.place(self.name)


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
            found.append(Artifact(kind, sidecar.stem, record, sidecar.with_suffix(suffix), sidecar))
    for item in found:
        item.notebook    # noqa: B018 -- raises on a sidecar without its notebook, before any writing
    return sorted(found, key=lambda a: (a.created, a.name))


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _from_chapter(path: Path, chapter_dir: Path) -> str:
    """`path` as the chapter reads it: relative to thesis_figures/<profile>/, behind \\FFChapterDir (no
    extension: pdflatex takes a figure's vector PDF, or the PNG where only that was kept)."""
    return f"\\{CHAPTER_DIR_MACRO} {_relative(path.with_suffix(''), chapter_dir)}"


def _table_block(artifact: Artifact, chapter_dir: Path) -> list[str]:
    return [f"\\input{{{_from_chapter(artifact.path.with_suffix('.tex'), chapter_dir)}}}"]


def _listed_table(artifact: Artifact, rows: int) -> list[str]:
    """A table too long to print: its file, its rows and its caption, so a reader finds it."""
    caption = artifact.record.get("caption") or artifact.record.get("headline") or ""
    file = f"results/{artifact.record.get('profile', '')}/tables/{artifact.name}.csv"
    return [f"\\paragraph{{Not printed: \\texttt{{{escape(file)}}}}} {rows} rows, too long to print here "
            f"(more than {sections_map.PRINTED_ROWS}). {escape(caption)}", ""]


def _sources_text(sources: list[str]) -> str:
    """"a.md:3", "a.md:23", "b.md:9" -> "a.md:3, 23; b.md:9" (first-seen order)."""
    lines: dict[str, list[str]] = {}
    for source in sources:
        file, _, line = str(source).rpartition(":")
        if not file or not line.isdigit():
            file, line = str(source), ""
        lines.setdefault(file, [])
        if line:
            lines[file].append(line)
    return "; ".join(f"{file}:{', '.join(numbers)}" if numbers else file for file, numbers in lines.items())


def _claims_block(artifact: Artifact, chapter_dir: Path) -> list[str]:
    """The claims table with the rows that differ only in where they are quoted printed once, their
    sources gathered (the seed documents repeat the same figure on many lines); every source is kept."""
    table = read_table_csv(artifact.path)
    if "source" not in table.columns:
        return _table_block(artifact, chapter_dir)
    keys = [c for c in table.columns if c != "source"]
    grouped = (table.groupby(keys, sort=False, dropna=False)["source"].agg(lambda s: _sources_text(list(s)))
               .reset_index()[list(table.columns)])
    record = artifact.record
    caption = (f"{record.get('caption') or artifact.name} A claim quoted on several lines is one row with "
               f"every line ({len(table)} quotations, {len(grouped)} rows).")
    rows, names = frame_rows(grouped)
    path = chapter_dir / f"{artifact.name}_by_claim.tex"
    path.write_text(render_table(rows, names, artifact.name, table_caption(caption, Provenance.from_record(record)),
                                 TexLayout.from_record(record.get("tex"))))
    return [f"\\input{{{_from_chapter(path, chapter_dir)}}}"]


def _table_rows(artifact: Artifact) -> int:
    return len(read_table_csv(artifact.path)) if artifact.path.is_file() else 0


def _thop_sentence(names: set[str]) -> str:
    """" V1: 592,371 parameters, 488,661 by thop's count." from the efficiency macros, where they exist."""
    true, thop = (macro_name("efficiency", "featherface_v1", c) for c in ("parameters", "thop_parameters"))
    if true in names and thop in names:
        return f" FeatherFace V1 has \\{true}{{}} parameters, of which thop counts \\{thop}{{}} (the paper's figure is thop's)."
    return ""


def _figure_block(artifact: Artifact, chapter_dir: Path, height: str = "0.45", macro_names: set[str] = frozenset()) -> list[str]:
    caption = (f"{sections_map.figure_caption(artifact.name, _thop_sentence(set(macro_names)))} "
               f"[{escape(artifact.data_source)}]")
    return [r"\begin{figure}[htbp]", r"\centering",
            f"\\includegraphics[width=\\linewidth,height={height}\\textheight,keepaspectratio]"
            f"{{{_from_chapter(artifact.path, chapter_dir)}}}",
            f"\\caption{{{caption}}}", f"\\label{{fig:{artifact.name}}}", r"\end{figure}"]


TALL = 1.2   # height / width above which figures print side by side


def is_tall(artifact: Artifact) -> bool:
    """Whether a figure is much taller than wide (a single column of panels): such figures share one
    float side by side rather than take a page each and leave half of it empty. Read from its PNG."""
    from PIL import Image

    png = artifact.path.with_suffix(".png")
    if not png.is_file():
        return False
    with Image.open(png) as image:
        width, height = image.size
    return height > TALL * width


def side_by_side_block(figures: list[Artifact], chapter_dir: Path) -> list[str]:
    """Figures in one float, each in its own minipage with its own caption and label."""
    width = f"{0.98 / len(figures):.3f}"
    lines = [r"\begin{figure}[htbp]", r"\centering"]
    for item in figures:
        caption = f"{sections_map.figure_caption(item.name)} [{escape(item.data_source)}]"
        lines += [f"\\begin{{minipage}}[t]{{{width}\\linewidth}}", r"\centering",
                  f"\\includegraphics[width=\\linewidth,height=0.7\\textheight,keepaspectratio]"
                  f"{{{_from_chapter(item.path, chapter_dir)}}}",
                  f"\\caption{{{caption}}}", f"\\label{{fig:{item.name}}}", r"\end{minipage}\hfill"]
    return lines + [r"\end{figure}"]


def _blocks(part: list[Artifact], chapter_dir: Path, height: str = "0.45", macro_names: set[str] = frozenset(),
            list_long: bool = False) -> list[str]:
    """The LaTeX of a section's artifacts in order, the side-by-side figures gathered into one float.
    `list_long`: a table of more than `PRINTED_ROWS` rows is named, not printed (appendices)."""
    together = [a for a in part if a.kind == "figure" and is_tall(a)]
    lines = []
    for item in part:
        if item in together:
            if item is together[0]:
                lines += side_by_side_block(together, chapter_dir)
        elif item.kind == "table":
            rows = _table_rows(item) if list_long else 0
            lines += _listed_table(item, rows) if rows > sections_map.PRINTED_ROWS else _table_block(item, chapter_dir)
        else:
            lines += _figure_block(item, chapter_dir, height, macro_names)
    return lines


class _Macros:
    """(table, row, column) -> "\\Macro{}" for every number numbers.tex defines ("{}" ends the name
    without eating the space after it)."""

    def __init__(self, profile: str):
        self.by_cell = {(Path(n.artifact).stem, n.row, n.column): f"\\{n.macro}{{}}"
                        for n in cited_numbers(profile) if n.artifact.startswith("tables/")}
        self.names = {n.macro for n in cited_numbers(profile)}

    def __call__(self, table: str, row: str, column: str) -> str | None:
        return self.by_cell.get((table, row, column))


def _tables(profile: str, items: list[Artifact]) -> dict[str, tuple[pd.DataFrame, str | None]]:
    """table name -> (its CSV, the column that names each row once)."""
    found = {}
    for item in items:
        if item.kind == "table" and item.path.is_file():
            frame = read_table_csv(item.path)
            found[item.name] = (frame, row_column(frame) if not frame.empty else None)
    return found


def _verdicts(names: list[str], tables: dict) -> list[sections_map.Verdict]:
    rows = []
    for name in names:
        frame, key = tables[name]
        if key is not None:
            rows += sections_map.comparison_rows(name, frame, key)
    return rows


def _opening(section: sections_map.Section, part: list[Artifact], tables: dict, macros: _Macros,
             synthetic: bool) -> list[str]:
    """The section's first paragraph: its headline APs and its verdicts, every number a macro."""
    names = [a.name for a in part if a.kind == "table" and a.name in tables]   # a figure may share a table's name
    sentences = []
    for name, rows in (("v1_ap", ("featherface_v1",)), ("distillation_ap", ("featherface_v2", "featherface_v2_distilled"))):
        if name in names and tables[name][1]:
            sentences += [s for row in rows
                          if (s := sections_map.ap_sentence(name, tables[name][0], tables[name][1], row, macros))]
    if section.key == "v1" and synthetic:
        sentences.append("Whether V1 reproduces its published WIDER FACE figures is not established here: "
                         "these models were trained and tested on synthetic data.")
    if section.key in ("parts", "deployment") and "efficiency" in tables:
        counts = [f"{sections_map.names_text(model)} \\{macro_name('efficiency', model, 'parameters')}{{}}"
                  for model in tables["efficiency"][0]["model"].astype(str)
                  if macro_name("efficiency", model, "parameters") in macros.names]
        if counts:
            sentences.append(f"Parameters (exact, so without an interval): {'; '.join(counts)}.")
    if section.key == "deployment":
        sentences.append("Latency is measured on one machine, without an interval: no verdict is drawn from it.")
    sentences += sections_map.verdict_sentences(_verdicts(names, tables), {n: t[0] for n, t in tables.items()},
                                                macros)
    if section.key == "swaps" and "placebo_check" in names:
        sentences.append(sections_map.placebo_sentence(tables["placebo_check"][0]))
    if not part:
        sentences.append("This profile wrote no table or figure for this question.")
    return [" ".join(sentences), ""]


def _references(part: list[Artifact]) -> list[str]:
    tables = [f"\\ref{{tab:{a.name}}}" for a in part if a.kind == "table"]
    figures = [f"\\ref{{fig:{a.name}}}" for a in part if a.kind == "figure"]
    said = []
    if tables:
        said.append(f"table{'s' * (len(tables) > 1)}~{', '.join(tables)}")
    if figures:
        said.append(f"figure{'s' * (len(figures) > 1)}~{', '.join(figures)}")
    return [f"The evidence: {' and '.join(said)}.", ""] if said else []


def _training_table(profile: str, part: list[Artifact], chapter_dir: Path) -> Path | None:
    """One table of every training run of the profile (one row per run), from the training_*.csv."""
    frames = [read_table_csv(a.path) for a in part if a.kind == "table" and a.path.is_file()]
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True).sort_values("run")
    columns = [c for c in TRAINING_COLUMNS if c in table.columns and table[c].notna().any()]
    rows, names = frame_rows(table)
    caption = (f"Every training run of profile {profile}: epochs planned and run, the best epoch, the final "
               "task loss and the training time in seconds.")
    path = chapter_dir / "training_runs.tex"
    path.write_text(render_table(rows, names, "training_runs", caption, TexLayout(columns=tuple(columns))))
    return path


SHORT_VERDICTS = {"one seed: not established": "one seed", "inside the noise": "noise"}
# (table, row): the APs the headline table opens with
HEADLINE_APS = (("v1_ap", "featherface_v1"), ("distillation_ap", "featherface_v2"),
                ("distillation_ap", "featherface_v2_distilled"))


def _headline_table(profile: str, verdicts: list[tuple[str, sections_map.Verdict]], tables: dict,
                    macros: _Macros, chapter_dir: Path) -> Path:
    """The summary of the chapter: each question's comparisons, their hard difference with its interval and
    the verdict in each setting (every number a macro)."""
    lines = ["% generated by ffcore from the comparison tables of results/" + profile + "/tables; do not edit",
             r"\begin{table}[htbp]", r"\centering", r"\small",
             r"\caption{The headline numbers of this chapter: the APs of V1, V2 and distilled V2, then each "
             r"comparison's hard-setting difference (AP points) with its "
             r"95\% interval, and the verdict in each setting (lower / higher: the interval excludes zero; "
             r"noise: it contains zero; one seed: no verdict).}", r"\label{tab:headline}",
             r"\begin{tabularx}{\linewidth}{>{\raggedright\arraybackslash}X r l l l}", r"\toprule"]
    # first the APs the comparisons start from (easy / medium / hard; the hard one with its interval)
    aps = [(name, row) for name, row in HEADLINE_APS if name in tables and tables[name][1]
           and row in set(tables[name][0][tables[name][1]].astype(str))]
    if aps:
        lines += [r"Model & AP hard [95\% interval] & \multicolumn{3}{l}{AP easy / medium / hard (\%)} \\", r"\midrule"]
        for name, row in aps:
            hard, low, high = (macros(name, row, c) for c in ("AP hard %", "hard CI low", "hard CI high"))
            cell = (hard or "--") + (f" [{low}, {high}]" if low and high else "")
            settings = " / ".join(macros(name, row, f"AP {s} %") or "--" for s in sections_map.SETTINGS)
            lines.append(f"{sections_map.names_text(row)} & {cell} & \\multicolumn{{3}}{{l}}{{{settings}}} \\\\")
        lines.append(r"\midrule")
    lines += [r"Comparison & $\Delta$ hard [95\% interval] & easy & medium & hard \\", r"\midrule"]
    question = None
    for key, verdict in verdicts:
        if key != question:
            if question is not None:
                lines.append(r"\addlinespace")
            title = sections_map.SECTIONS[key].title
            lines.append(f"\\multicolumn{{5}}{{@{{}}l}}{{\\emph{{{escape(title)}}}}} \\\\")
            question = key
        frame = tables[verdict.table][0]
        column = sections_map.difference_column(frame, "hard")
        value = macros(verdict.table, verdict.row, column) if column else None
        low, high = macros(verdict.table, verdict.row, "dhard CI low"), macros(verdict.table, verdict.row, "dhard CI high")
        cell = "--" if value is None else value + (f" [{low}, {high}]" if low and high else "")
        marks = [escape(SHORT_VERDICTS.get(verdict.verdicts.get(s, ""), verdict.verdicts.get(s, "--")))
                 for s in sections_map.SETTINGS]
        lines.append(f"{sections_map.names_text(verdict.label)} & {cell} & {' & '.join(marks)} \\\\")
    if not verdicts:
        lines.append(r"\multicolumn{5}{l}{this profile wrote no comparison} \\")
    lines += [r"\bottomrule", r"\end{tabularx}", r"\end{table}"]
    path = chapter_dir / "headline.tex"
    path.write_text("\n".join(lines) + "\n")
    return path


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
    lines = [r"\section{Provenance}",
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


def _duration_sentence(numbers: set[str]) -> str:
    if EMPTY_CACHES_MACRO in numbers:
        return (f"The run that wrote these artifacts took \\{EMPTY_CACHES_MACRO}~minutes of wall clock from "
                "empty caches (every model trained, every notebook run).")
    total = macro_name("run minutes", "total")
    if total in numbers:
        return f"The last pass of the notebooks took \\{total}~minutes (no run from empty caches is recorded)."
    return "No duration of the run is recorded."


def _by_section(items: list[Artifact]) -> dict[str, list[Artifact]]:
    """The artifacts the chapter prints, by section, tables first; one that another of the run's artifacts
    supersedes (`SUPERSEDED_BY`) is left out."""
    names = {a.name for a in items}
    items = [a for a in items if sections_map.SUPERSEDED_BY.get(a.name) not in names]
    placed: dict[str, list[Artifact]] = {}
    for item in sorted(items, key=lambda a: (a.kind == "figure", a.created, a.name)):   # tables first
        placed.setdefault(item.section, []).append(item)
    return placed


def _chapter_body(profile: str, chapter_dir: Path) -> list[str]:
    from ffcore.runs.profiles import get_profile

    run_profile = get_profile(profile)
    items = artifacts(profile)
    if not items:
        raise FileNotFoundError(f"profile {profile!r} has no artifacts in {results_dir() / profile / 'tables'} or "
                                f"{figures_dir() / profile}; run `python run_all.py --profile {profile}` first")
    placed = _by_section(items)
    tables = _tables(profile, items)
    macros = _Macros(profile)
    # the chapter states its own duration: the description's pointer to a file is left out
    description = re.sub(r"\s*\([^()]*\b[\w/]+\.(md|log|csv)\b[^()]*\)", "", run_profile.description)
    lines = [f"% generated by ffcore (ffcore thesis --profile {profile}); do not edit",
             f"% needs \\{CHAPTER_DIR_MACRO} (the path of thesis_figures/{profile}/), preamble.tex and numbers.tex",
             f"\\chapter{{Results: profile {escape(profile)}}}\\label{{chap:results-{profile}}}", "",
             f"Profile \\texttt{{{escape(profile)}}}: {escape(description)}."]
    if run_profile.is_synthetic:
        lines.append(r"\textbf{Every accuracy number in this chapter was computed on SYNTHETIC DATA, not WIDER "
                     r"FACE}: it compares the models on synthetic faces and says nothing about real faces.")
    lines += [_duration_sentence(macros.names),
              r"Table~\ref{tab:headline} gathers the comparisons and their verdicts; each section below answers "
              r"one question, opening with what its tables establish.", ""]
    headline = [(s.key, v) for s in sections_map.QUESTIONS
                for v in _verdicts([a.name for a in placed.get(s.key, []) if a.kind == "table" and a.name in tables],
                                   tables)]
    lines += [f"\\input{{{_from_chapter(_headline_table(profile, headline, tables, macros, chapter_dir), chapter_dir)}}}",
              r"\FloatBarrier", "", sections_map.multiplicity_sentence([v for _, v in headline]), ""]
    for section in sections_map.QUESTIONS:
        part = placed.get(section.key, [])
        lines += [f"\\section{{{escape(section.title)}}}\\label{{sec:{section.key}}}", ""]
        lines += _opening(section, part, tables, macros, run_profile.is_synthetic)
        lines += _references(part)
        lines += _blocks(part, chapter_dir, macro_names=macros.names)
        lines += [r"\FloatBarrier", ""]
    return lines


def _appendix_body(profile: str, chapter_dir: Path) -> list[str]:
    items = artifacts(profile)
    placed = _by_section(items)
    lines = [f"% generated by ffcore (ffcore thesis --profile {profile}); do not edit",
             f"% \\input after the thesis's \\appendix; needs \\{CHAPTER_DIR_MACRO} like results.tex",
             f"\\chapter{{Results of profile {escape(profile)}: details}}", ""]
    for section in sections_map.APPENDICES:
        part = placed.get(section.key, [])
        if not part:
            continue
        lines += [f"\\section{{{escape(section.title)}}}", ""]
        if section.key == "training":
            table = _training_table(profile, part, chapter_dir)
            lines += [f"\\input{{{_from_chapter(table, chapter_dir)}}}"] if table else []
            lines += _blocks([a for a in part if a.kind == "figure"], chapter_dir, height="0.3")
        elif section.key in sections_map.ALWAYS_PRINTED:
            # read row by row against its sources: every claim printed, each once
            for item in part:
                lines += _claims_block(item, chapter_dir) if item.kind == "table" else _blocks([item], chapter_dir)
        else:
            lines += _blocks(part, chapter_dir, height="0.45", list_long=True)
        lines += [r"\FloatBarrier", ""]
    return lines + _provenance_appendix(items)


def _loose(lines: list[str]) -> list[str]:
    """The body in a group that lets lines stretch: identifiers (\\texttt, breakable only at "_") and
    timestamps would otherwise stick out of the margin. Scoped, so the thesis around it keeps its setting."""
    # floats: LaTeX's defaults leave a page half empty beside two figures; these let floats fill a page
    # with little text, and a float page be used only once it is mostly full (local to the group, unlike
    # the float counters, which \setcounter would change for the whole thesis)
    floats = (r"\renewcommand{\topfraction}{0.9}\renewcommand{\bottomfraction}{0.8}"
              r"\renewcommand{\textfraction}{0.07}\renewcommand{\floatpagefraction}{0.8}")
    return [*lines[:2], r"\begingroup\setlength{\emergencystretch}{3em}", floats, *lines[2:], r"\endgroup"]


def write_chapter(profile: str, rerender_tables: bool = True) -> dict[str, Path]:
    """Write preamble.tex, numbers.tex/.json, results.tex, appendix.tex and chapter.tex into
    thesis_figures/<profile>/."""
    chapter_dir = figures_dir() / profile
    chapter_dir.mkdir(parents=True, exist_ok=True)
    if rerender_tables:
        render_tables(profile)
    written = write_numbers(profile, chapter_dir)
    preamble = chapter_dir / "preamble.tex"
    preamble.write_text("% generated by ffcore: the packages results.tex and appendix.tex need "
                        "(a thesis that loads some itself keeps its own options)\n"
                        + "\n".join(PREAMBLE_PACKAGES) + "\n")
    body = chapter_dir / "results.tex"
    body.write_text("\n".join(_loose(_chapter_body(profile, chapter_dir))) + "\n")
    appendix = chapter_dir / "appendix.tex"
    appendix.write_text("\n".join(_loose(_appendix_body(profile, chapter_dir))) + "\n")
    chapter = chapter_dir / "chapter.tex"
    chapter.write_text("\n".join([
        "% generated by ffcore: a standalone document around results.tex and appendix.tex",
        r"\documentclass[11pt,a4paper]{report}", r"\usepackage[margin=2.5cm]{geometry}",
        f"\\newcommand{{\\{CHAPTER_DIR_MACRO}}}{{}}   % this folder: a thesis elsewhere gives its path, with a final /",
        f"\\input{{\\{CHAPTER_DIR_MACRO} preamble}}", f"\\input{{\\{CHAPTER_DIR_MACRO} numbers}}",
        r"\begin{document}", f"\\input{{\\{CHAPTER_DIR_MACRO} results}}", r"\appendix",
        f"\\input{{\\{CHAPTER_DIR_MACRO} appendix}}", r"\end{document}", ""]))
    return {**written, "preamble": preamble, "results": body, "appendix": appendix, "chapter": chapter}


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
