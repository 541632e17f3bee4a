"""results/<profile>/summary.md: every table and figure of a profile with its headline number.

Built from the sidecar JSON files that `ffcore.report.provenance` writes beside each artifact,
so the summary lists exactly what exists on disk, nothing typed in by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ffcore.paths import REPO_ROOT, figures_dir, results_dir


def _sidecars(profile: str) -> list[tuple[str, Path, dict]]:
    found = []
    for kind, folder in (("table", results_dir() / profile / "tables"), ("figure", figures_dir() / profile)):
        if not folder.is_dir():
            continue
        for sidecar in sorted(folder.glob("*.json")):
            try:
                record = json.loads(sidecar.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"unreadable provenance sidecar {sidecar}: {exc}; delete it and rerun "
                                 f"the notebook that wrote it") from exc
            found.append((kind, sidecar, record))
    return found


def _shown_path(path: Path) -> str:
    """Relative to the repository when inside it (results moved elsewhere, e.g. by FFCORE_RESULTS: absolute)."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def artifact_index(profile: str) -> pd.DataFrame:
    """One row per artifact: kind, name, files, dataset, headline, checkpoints, git commit, time."""
    rows = []
    for kind, sidecar, record in _sidecars(profile):
        stem = sidecar.with_suffix("")
        suffixes = (".csv", ".tex") if kind == "table" else (".pdf", ".png")
        files = [_shown_path(stem.with_suffix(s)) for s in suffixes if stem.with_suffix(s).exists()]
        git = record.get("git") or {}
        # "+dirty" alone in sidecars older than the code-diff hash
        commit = (git.get("commit") or "unknown")[:10] + ("+dirty" if git.get("dirty") else "") \
            + (f":{git['diff_sha256'][:8]}" if git.get("dirty") and git.get("diff_sha256") else "")
        rows.append({"kind": kind, "name": stem.name, "files": ", ".join(files),
                     "dataset": record.get("dataset", ""), "headline": record.get("headline") or "",
                     "checkpoints": ", ".join(f"{k}@{v}" for k, v in (record.get("checkpoints") or {}).items()),
                     "commit": commit, "created": record.get("created", "")})
    return pd.DataFrame(rows, columns=["kind", "name", "files", "dataset", "headline", "checkpoints",
                                       "commit", "created"])


def _markdown_cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_summary(profile: str, wall_times: list[tuple[str, str, float]] | None = None) -> Path:
    """Write results/<profile>/summary.md and return its path. `wall_times`: (notebook, status,
    seconds) of the run_all.py run that produced the artifacts, listed at the end."""
    from ffcore.runs.profiles import get_profile

    run_profile = get_profile(profile)
    index = artifact_index(profile)
    out = results_dir() / profile / "summary.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# Results summary — profile `{profile}`", "",
             f"{run_profile.description}.", ""]
    if run_profile.is_synthetic:
        lines += ["**Every number below was computed on SYNTHETIC DATA, not WIDER FACE.** It compares the models "
                  "on synthetic faces; it says nothing about their accuracy on real faces (the real-photo check "
                  "tables measure that).", ""]
    lines += ["Generated from the provenance sidecars (`*.json`) beside each artifact; each sidecar also "
              "records the git commit, dataset, checkpoint hashes and settings.", ""]
    for kind, title in (("table", "Tables"), ("figure", "Figures")):
        part = index[index.kind == kind]
        lines += [f"## {title} ({len(part)})", ""]
        if part.empty:
            lines += ["(none yet)", ""]
            continue
        lines += ["| artifact | headline | files | data | checkpoints | commit |",
                  "|---|---|---|---|---|---|"]
        for row in part.itertuples():
            lines.append("| " + " | ".join(_markdown_cell(v) for v in (
                row.name, row.headline, row.files, row.dataset, row.checkpoints, row.commit)) + " |")
        lines.append("")
    lines += _training_runs(profile)
    lines += _measured_duration(profile)
    if wall_times:
        total = sum(seconds for _, _, seconds in wall_times)
        lines += ["## Wall time of the run that wrote these artifacts", "", "| notebook | status | wall time |",
                  "|---|---|---|"]
        lines += [f"| {name} | {status} | {seconds / 60:.1f} min |" for name, status, seconds in wall_times]
        lines += [f"| total | | {total / 60:.1f} min |", ""]
    out.write_text("\n".join(lines))
    return out


DURATION_LOG = "run_from_empty_caches.log"
# GNU time's line, or the same figure for a part that was killed before GNU time could report,
# taken from the part's logged start and stop times
_ELAPSED = re.compile(r"Elapsed \(wall clock(?:\) time| from the part's start and stop times\)) \(h:mm:ss or m:ss\): "
                      r"(?P<clock>[\d:.]+)")


def elapsed_seconds(clock: str) -> float:
    """GNU time's elapsed wall clock ("1:01:02" or "12:34.56") in seconds."""
    seconds = 0.0
    for part in clock.split(":"):
        seconds = 60 * seconds + float(part)
    return seconds


def measured_parts(profile: str) -> list[float]:
    """Seconds of each part of the run from empty caches, timed by GNU time (a part killed first: from its
    start and stop times; `results/<profile>/run_from_empty_caches.log`, one timing per part of a run made
    in parts); empty without the log."""
    log = results_dir() / profile / DURATION_LOG
    if not log.is_file():
        return []
    parts = [elapsed_seconds(match["clock"]) for match in _ELAPSED.finditer(log.read_text())]
    if not parts:
        raise ValueError(f"{log} holds no GNU time timing ('Elapsed (wall clock) time ...'); "
                         "it is the log of a run timed with /usr/bin/time -v")
    return parts


def _measured_duration(profile: str) -> list[str]:
    """What the profile costs from empty caches, even when the run that wrote the artifacts reused its
    trainings (see `measured_parts`)."""
    parts = measured_parts(profile)
    if not parts:
        return []
    each = ", ".join(f"{seconds / 60:.1f}" for seconds in parts)
    return ["## Duration measured from empty caches", "",
            f"`results/{profile}/{DURATION_LOG}`: {len(parts)} part{'s' * (len(parts) > 1)} timed, "
            f"{sum(parts) / 60:.1f} min of wall clock in all" + (f" ({each} min)" if len(parts) > 1 else "")
            + "; the log holds each part's command and output.", ""]


def _training_runs(profile: str) -> list[str]:
    """A section with every run folder's record: complete or not, epochs, how it was trained (and every
    resume), wall time and the commit it was trained at (`ffcore.runs.records`)."""
    from ffcore.runs.records import how_trained, read_record

    folder = results_dir() / profile / "checkpoints"
    runs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not runs:
        return []
    lines = ["## Training runs", "", "| run | state | epochs | how | wall time | trained at commit |",
             "|---|---|---|---|---|---|"]
    for run_dir in runs:
        record = read_record(run_dir)
        if record is None:
            lines.append(f"| {run_dir.name} | no record (not trained by the study) | | | | |")
            continue
        state = "complete" if record.get("complete") else "INCOMPLETE"
        wall = f"{record['wall_time_s'] / 60:.1f} min" if record.get("wall_time_s") else ""
        lines.append(f"| {run_dir.name} | {state} | {record.get('finished_epochs')}/{record.get('planned_epochs')} | "
                     f"{how_trained(record)} | {wall} | {(record.get('git_commit') or '')[:10]} |")
    return lines + [""]


def summary_table(study) -> pd.DataFrame:
    """Write the summary for the study's profile and return the artifact index (notebook 05's last cell)."""
    write_summary(study.profile.name)
    return artifact_index(study.profile.name)[["kind", "name", "headline", "dataset"]]
