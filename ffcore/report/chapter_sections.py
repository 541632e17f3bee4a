"""Where each artifact goes in the results chapter, and the paragraph that opens each question.

The chapter is organised by the thesis's questions (`QUESTIONS`), not by the notebook that wrote an
artifact. `SECTION_OF` declares, for every table and figure the study writes, the question section
it belongs to or the appendix it is left to (`APPENDICES`); `place` raises on an artifact the map
does not know, so a new artifact is placed on purpose rather than dumped at the end.

`opening_paragraph` writes a question's first paragraph from its tables: the verdicts the tables
establish ("higher" / "lower": an interval that excludes zero), each with its difference and
interval as macros from numbers.tex, then what is not established and why. Nothing in it is typed by
hand but the wording around the macros.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ffcore.report.tex import escape

SETTINGS = ("easy", "medium", "hard")
ESTABLISHED = frozenset({"higher", "lower"})
REFERENCE = "reference"
# Why a verdict is missing, in the paragraph's words (the tables' own verdict texts as keys).
NOT_ESTABLISHED_REASONS = {
    "one seed: not established": "one training seed per arm, so no verdict",
    "inside the noise": "the interval contains zero",
}


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    # What the section's figures are, one sentence each (figure name or fnmatch pattern -> text).
    # A table's caption comes from its own sidecar; a figure has none, so the map gives it one.
    figures: tuple[tuple[str, str], ...] = ()


QUESTIONS = (
    Section("v1", "Is V1 reproduced, and how does it compare with the WIDER FACE-trained references?", (
        ("v1_ap_intervals", "AP of V1 and of the WIDER FACE-trained references, with 95\\% intervals."),
        ("v1_pr_curves", "Precision against recall of V1 and the references."),
        ("detections_featherface_v1", "V1's detections on one test image against the ground truth."),
    )),
    Section("parts", "What do V2's parts cost and save?", (
        ("parts_*", "Parameters of each part (backbone, neck, context, heads) per model."),
        ("v2_vs_v1_intervals", "V2 minus V1 (AP points) with 95\\% intervals."),
    )),
    Section("distillation", "Does distillation help?", (
        ("distillation_ap_intervals", "AP of V1, V2 and the distilled V2, with 95\\% intervals."),
        ("distillation_comparison_intervals", "Distilled V2 minus V2 alone (AP points) with 95\\% intervals."),
    )),
    Section("swaps", "Which parts matter (the swaps, against the placebo)?", (
        ("ablations", "AP of V1 and of each one-part swap."),
        ("ablations_intervals", "Each swap minus V1 (AP points) with 95\\% intervals."),
    )),
    Section("variants", "Do the V2 variants help?"),
    Section("budget", "How much training does V2 need?", (
        ("training_budget", "AP in each setting against the training budget (epochs) for V1, V2 and distilled V2, "
                            "with 95\\% intervals."),
    )),
    Section("deployment", "Deployment: latency, size, INT8", (
        ("latency", "Forward latency at 640 by model and runtime."),
        ("peer_latency", "Latency of the published lightweight detectors and ours on the real photos."),
        ("ap_vs_params_published_*", "Hard AP against parameter count: the published WIDER FACE detectors "
                                      "(their reported figures) and ours.{thop}"),
    )),
)
APPENDICES = (
    Section("training", "Training runs", (
        ("v1_training_curves", "Training loss of V1 by epoch."),
        ("distillation_training_curves", "Training loss of V2 alone and distilled, by epoch."),
        ("fork_training_log", "Training loss of the fork's ECA-CBAM model in its WIDER FACE run."),
    )),
    # what the architectures are, part by part: the questions cite their totals
    Section("architecture", "The architectures, part by part"),
    Section("claims", "The seed documents' claims against the measurements"),
    Section("data", "The data", (("dataset_preview", "Training images of the dataset with their boxes."),)),
    # long per-module and per-photo tables, and figures of one panel per module: read beside the
    # question they serve, printed where they do not interrupt it
    Section("diagnostics", "Attention: gates and masks", (
        ("attention_maps_*", "The attention masks of {matched} on a real photo, one panel per module."),)),
    Section("photos", "Every model on the real photos", (
        ("real_photo_detections", "Faces found on a real photo by a WIDER FACE-trained detector."),
        ("fork_detections_*", "Faces found on {matched}.jpg by the fork's ECA-CBAM model and RetinaFace."),
        ("peer_detections_*", "Faces found on a real photo by each detector ({matched})."),
    )),
    Section("deployment_details", "Deployment: the graphs operator by operator"),
)

# artifact name (or fnmatch pattern; the first match wins) -> section key
SECTION_OF: tuple[tuple[str, str], ...] = (
    ("v1_ap", "v1"), ("v1_ap_intervals", "v1"), ("v1_pr_curves", "v1"), ("v1_training_curves", "training"),
    ("fork_weights_ap", "v1"), ("v1_released_anchor", "v1"), ("v1_real_photo_check", "photos"),
    ("real_photo_check", "photos"), ("real_photo_detections", "photos"), ("detections_featherface_v1", "v1"),
    ("fork_detections_*", "photos"), ("fork_training_log", "training"),
    ("param_counts_featherface_v1", "architecture"), ("params_featherface_v1", "architecture"),
    ("flops_retinaface_mnet025_vs_featherface_v1", "parts"), ("parts_*", "parts"), ("shapes_*", "architecture"),
    ("params_featherface_v2_ultra", "architecture"), ("v2_vs_v1", "parts"), ("v2_vs_v1_intervals", "parts"),
    ("distillation_training_curves", "training"), ("distillation_*", "distillation"),
    ("ablations", "swaps"), ("ablations_intervals", "swaps"), ("ablation_variants", "architecture"),
    ("gate_health", "diagnostics"), ("attention_maps_*", "diagnostics"), ("params_fork_models", "architecture"),
    ("v2_variants", "variants"), ("v2_own_recipe", "variants"), ("pruned", "variants"),
    ("training_budget", "budget"), ("training_budget_differences", "budget"), ("training_budget_per_seed", "budget"),
    ("ablations_per_seed", "swaps"), ("placebo_check", "swaps"), ("v2_variants_per_seed", "variants"),
    ("efficiency", "deployment"), ("benchmark", "deployment"), ("latency", "deployment"),
    ("deploy_operator_profile", "deployment_details"), ("deploy_ladder", "deployment_details"),
    ("deploy_*", "deployment"), ("peer_detections_*", "photos"), ("peer_*", "deployment"),
    ("ap_vs_params_published_*", "deployment"),
    ("training_*", "training"), ("seed_claims_vs_measured", "claims"), ("seed_claims_vs_benchmark", "claims"), ("dataset_preview", "data"),
)
# An artifact the chapter leaves out when the one it names is there too: the same rows, fewer columns
# (notebook 01 writes the claims without timings; notebook 05 writes them again beside its benchmark).
SUPERSEDED_BY = {"seed_claims_vs_measured": "seed_claims_vs_benchmark"}
# A table longer than this many rows is named in its appendix (file, rows, caption) but not printed:
# pages of per-photo or per-module rows would be most of the chapter. The claims are printed whatever
# their length: their appendix is where a reader checks each quoted figure.
PRINTED_ROWS = 60
ALWAYS_PRINTED = frozenset({"claims"})
SECTIONS = {s.key: s for s in (*QUESTIONS, *APPENDICES)}


def place(name: str) -> str:
    """The key of the section (question or appendix) artifact `name` belongs to."""
    for pattern, key in SECTION_OF:
        if fnmatch.fnmatchcase(name, pattern):
            return key
    raise KeyError(f"artifact {name!r} has no place in the chapter: add it to "
                   f"ffcore.report.chapter_sections.SECTION_OF (a question section or an appendix)")


def figure_caption(name: str, thop: str = "") -> str:
    """The one-sentence caption the map gives figure `name` (LaTeX; "{matched}" in the map's text is the
    part of the name its pattern's "*" matched; "{thop}" takes `thop`, a sentence on thop's counts)."""
    section = SECTIONS[place(name)]
    for pattern, text in section.figures:
        if fnmatch.fnmatchcase(name, pattern):
            # "{matched}": the part of the name the pattern's "*" stands for (the model, the photo)
            matched = name[len(pattern.split("*")[0]):len(name) - len(pattern.split("*")[-1])] if "*" in pattern else name
            return text.replace("{matched}", escape(matched)).replace("{thop}", thop)
    raise KeyError(f"figure {name!r} has no caption in section {section.key!r} of "
                   f"ffcore.report.chapter_sections.QUESTIONS/APPENDICES")


_IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")


def names_text(text: str) -> str:
    """`text` as LaTeX with every run or model identifier ("featherface_v2_distilled") in \\texttt,
    breakable after each "_" (tex.escape), and the rest escaped as prose."""
    pieces, last = [], 0
    for match in _IDENTIFIER.finditer(text):
        pieces += [escape(text[last:match.start()]), f"\\texttt{{{escape(match.group(0))}}}"]
        last = match.end()
    return "".join(pieces) + escape(text[last:])


# ---------------------------------------------------------------------------------------- verdicts

@dataclass(frozen=True)
class Verdict:
    """One comparison row of a table: its label, and per setting (verdict, difference column, row key)."""

    table: str
    row: str            # the row's key (numbers.row_column's value), which names its macros
    label: str          # what is compared, as plain text
    verdicts: dict      # setting -> verdict text


def difference_column(table: pd.DataFrame, setting: str) -> str | None:
    for column in (f"d{setting} AP pts", f"d{setting} AP pts vs parent"):
        if column in table.columns:
            return column
    return None


def comparison_rows(name: str, table: pd.DataFrame, key: str) -> list[Verdict]:
    """The rows of a comparison table that carry a verdict, where a seed comparison keeps only its
    pooled row (its per-seed rows are single pairs: never a verdict)."""
    if not any(f"{s} verdict" in table.columns for s in SETTINGS):
        return []
    pooled = set(table.loc[table[key].astype(str) == "pooled", "comparison"]) if "comparison" in table.columns else set()
    found = []
    for _, row in table.iterrows():
        if "comparison" in table.columns and row["comparison"] in pooled and str(row[key]) != "pooled":
            continue
        verdicts = {s: str(row[f"{s} verdict"]) for s in SETTINGS
                    if f"{s} verdict" in table.columns and isinstance(row[f"{s} verdict"], str)}
        if not verdicts or set(verdicts.values()) == {REFERENCE}:
            continue
        if "comparison" in table.columns:
            label = str(row["comparison"])
        elif "vs" in table.columns and isinstance(row["vs"], str):
            label = f"{row[key]} vs {row['vs']}"
        else:
            label = str(row[key])
        role = row.get("role")
        if isinstance(role, str) and role.startswith("placebo"):
            label += f" ({role})"     # the table's own word: this row measures the noise, not a part
        found.append(Verdict(name, str(row[key]), label, verdicts))
    return found


Macro = Callable[[str, str, str], str | None]   # (table, row, column) -> "\\Name{}" or None


def _interval_text(verdict: Verdict, setting: str, table: pd.DataFrame, macro: Macro) -> str:
    difference = difference_column(table, setting)
    value = macro(verdict.table, verdict.row, difference) if difference else None
    if value is None:
        return setting
    low = macro(verdict.table, verdict.row, f"d{setting} CI low")
    high = macro(verdict.table, verdict.row, f"d{setting} CI high")
    interval = f", 95\\% interval [{low}, {high}]" if low and high else ""
    return f"{setting} ({value} AP points{interval})"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def verdict_sentences(rows: list[Verdict], tables: dict[str, pd.DataFrame], macro: Macro) -> list[str]:
    """"X is lower on hard (−4.5 AP points, 95 % interval [..])" for every established verdict, then
    the comparisons without one, grouped by the reason (LaTeX)."""
    sentences, missing = [], {}
    for verdict in rows:
        by_direction: dict[str, list[str]] = {}
        for setting, text in verdict.verdicts.items():
            if text in ESTABLISHED:
                by_direction.setdefault(text, []).append(
                    _interval_text(verdict, setting, tables[verdict.table], macro))
            elif text != REFERENCE:
                missing.setdefault(NOT_ESTABLISHED_REASONS.get(text, text), []).append(
                    f"{names_text(verdict.label)} ({setting})")
        if by_direction:
            parts = [f"{direction} on {_join(settings)}" for direction, settings in sorted(by_direction.items())]
            sentences.append(f"Established: {names_text(verdict.label)} is {'; '.join(parts)}.")
    for reason, items in missing.items():
        sentences.append(f"Not established ({escape(reason)}): {_compress(items)}.")
    return sentences


def placebo_sentence(check: pd.DataFrame) -> str:
    """What the placebo check found (LaTeX): in how many settings the interval of a swap that computes
    exactly what its base computes contains zero, and what follows for the single-seed rows."""
    if not {"passes", "setting", "seeds"} <= set(check.columns) or check.empty:
        return ""
    passes = check["passes"].astype(str).str.lower() == "true"
    seeds = str(check["seeds"].iloc[0])
    text = (f"The placebo computes exactly what its base computes ({seeds} seeds): its interval contains zero "
            f"in {int(passes.sum())} of the {len(check)} settings (table~\\ref{{tab:placebo_check}}).")
    if not passes.all():
        text += (" Where it does not, the interval over the test images misses the difference between two "
                 "trainings of the same computation: a single-seed difference of that size is noise, which is "
                 "why no single-seed row is a verdict.")
    return text


def multiplicity_sentence(rows: list[Verdict]) -> str:
    """How many of the stated verdicts rest on an interval, how many of those exclude zero, and how
    many would by chance alone: each 95 % interval misses a true zero one time in twenty, so among
    n intervals about n / 20 "established" verdicts are expected even if no difference were real."""
    decided = [text for row in rows for text in row.verdicts.values()
               if text in ESTABLISHED or text == "inside the noise"]
    if not decided:
        return ""
    established = sum(text in ESTABLISHED for text in decided)
    return (f"Over the whole chapter, {len(decided)} verdicts rest on a 95\\% interval over seeds and images "
            f"(the one-seed comparisons state none); {established} of them exclude zero, where about "
            f"{0.05 * len(decided):.1f} would by chance alone if no difference were real. The intervals are "
            f"not corrected for this multiplicity: an established verdict near its interval's edge is weaker "
            f"evidence than one far from it.")


def _compress(items: list[str]) -> str:
    """"a (easy), a (medium), a (hard)" -> "a (easy, medium, hard)", keeping first-seen order."""
    grouped: dict[str, list[str]] = {}
    for item in items:
        label, _, setting = item.rpartition(" (")
        grouped.setdefault(label, []).append(setting.rstrip(")"))
    return "; ".join(f"{label} ({', '.join(settings)})" for label, settings in grouped.items())


def ap_sentence(table: str, frame: pd.DataFrame, key: str, row: str, macro: Macro) -> str | None:
    """"V1 reaches AP a / b / c (easy / medium / hard, %; hard 95 % interval [l, h])" from an AP table."""
    if row not in set(frame[key].astype(str)):
        return None
    values = [macro(table, row, f"AP {s} %") for s in SETTINGS]
    if any(v is None for v in values):
        return None
    low, high = macro(table, row, "hard CI low"), macro(table, row, "hard CI high")
    interval = f"; hard 95\\% interval [{low}, {high}]" if low and high else ""
    return (f"{names_text(row)} reaches AP {' / '.join(values)} (easy / medium / hard, \\%{interval}).")
