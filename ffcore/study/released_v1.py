"""The released FeatherFace V1 trainings as the anchor of the study's V1.

Two trainings of V1 on WIDER FACE are public (both files are in the shared folder); their authors
report their WIDER FACE validation AP. `released_v1_reported.csv` (beside this module) holds those
figures with the weight file, the commit and where they are printed: they are reported by their
author, not measured here, and every table that shows them says so. Their difference is the only
measured run-to-run spread of a FeatherFace on WIDER FACE, so a V1 that ffcore trains is read
against it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ffcore.data.ground_truth import SETTINGS
from ffcore.runs.context import Study

REPORTED_FILE = Path(__file__).with_name("released_v1_reported.csv")
REPORTED_COLUMNS = ("file", "trained_by", "commit", "source", *SETTINGS)
REPORTED_KIND = "reported by its author (WIDER FACE val), not measured here"
SPREAD_KIND = "run-to-run spread of the two released trainings (difference of the reported figures)"


def reported_figures(path: Path = REPORTED_FILE) -> pd.DataFrame:
    """The reported WIDER FACE val AP (%) of the released trainings, one row per weight file.

    A missing column or a value that is not a number is an error naming the file and the line."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REPORTED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REPORTED_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append({**row, **{s: float(row[s]) for s in SETTINGS}})
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: AP easy / medium / hard must be numbers, got "
                                 f"{[row.get(s) for s in SETTINGS]}") from None
    if len(rows) < 2:
        raise ValueError(f"{path}: {len(rows)} reported training(s); the spread needs two")
    return pd.DataFrame(rows, columns=list(REPORTED_COLUMNS))


def reported_spread(reported: pd.DataFrame) -> dict[str, float]:
    """Per setting, the largest minus the smallest reported AP (points)."""
    return {s: round(float(reported[s].max() - reported[s].min()), 2) for s in SETTINGS}


def released_v1_anchor_table(study: Study, run: str | None = None, name: str = "v1_released_anchor") -> pd.DataFrame:
    """The V1 that ffcore trains (measured, where the study evaluates on WIDER FACE) beside the reported
    figures of the two released trainings and their spread.

    On a synthetic profile the study's V1 is measured on synthetic images, which no WIDER FACE figure
    compares with: the table then holds the reported figures and their spread only, and says why."""
    from ffcore.report.provenance import WIDERFACE
    from ffcore.study.evaluation import ap_frame
    from ffcore.runs.training import study_run

    reported = reported_figures()
    rows = []
    measured = study.dataset == WIDERFACE
    if measured:
        run = run or study_run(study, "featherface_v1")
        ours = ap_frame(study, [run]).iloc[0]
        rows.append({"V1": run, "kind": f"measured here ({ours['split']}, {ours['images']} images)",
                     **{f"AP {s} %": ours[f"AP {s} %"] for s in SETTINGS}, "file": "", "commit": "",
                     "source": "this study"})
    for _, row in reported.iterrows():
        rows.append({"V1": f"released, trained by {row['trained_by']}", "kind": REPORTED_KIND,
                     **{f"AP {s} %": row[s] for s in SETTINGS}, "file": row["file"], "commit": row["commit"],
                     "source": row["source"]})
    spread = reported_spread(reported)
    rows.append({"V1": "the two released trainings", "kind": SPREAD_KIND,
                 **{f"AP {s} %": spread[s] for s in SETTINGS}, "file": "", "commit": "",
                 "source": REPORTED_FILE.name})
    table = pd.DataFrame(rows)
    caption = ("FeatherFace V1: the released trainings' WIDER FACE val AP as reported by their author, their spread, "
               "and the V1 trained here")
    headline = ("released V1 reported " + "; ".join("/".join(f"{row[s]:.2f}" for s in SETTINGS)
                                                    for _, row in reported.iterrows())
                + " (E/M/H AP %, reported by its author); spread " + "/".join(f"{spread[s]:.2f}" for s in SETTINGS)
                + " points")
    if measured:
        return study.save_table(table, name, checkpoints=[run], caption=caption, reported_figures=REPORTED_FILE.name,
                                headline=headline + f"; {run} measured "
                                         + "/".join(f"{rows[0][f'AP {s} %']:.2f}" for s in SETTINGS))
    # nothing in it is measured: its stamp says reported, not the profile's data
    from ffcore.report.provenance import REPORTED, Provenance, write_table
    from ffcore.report.display import CAPTION

    caption += (f" (the study's V1 is measured on {study.dataset} data, which no WIDER FACE figure compares with: "
                "not shown)")
    write_table(table, study.tables_dir, name, Provenance(profile=study.profile.name, dataset=REPORTED,
                                                          notes={"reported_figures": REPORTED_FILE.name}),
                caption=caption, headline=headline)
    table.attrs[CAPTION] = caption
    return table
