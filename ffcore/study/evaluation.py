"""AP tables of a study's runs, their paired comparisons, and the cache that keeps each run's result.

APs follow the official WIDER FACE protocol (`ffcore.eval`) on the study's evaluation split
(`ffcore.runs.datasets.evaluation_split`: the held-out test split when the dataset has one,
else the validation split, as on WIDER FACE, which publishes no test labels). Each run's result
is cached in results/<profile>/cache/eval_<run>.json keyed by the checkpoint hash, the model's
code, the evaluator's code, the split and the test settings, so later notebooks reuse it instead
of re-predicting.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ffcore.data.ground_truth import SETTINGS
from ffcore.report.provenance import dataset_fingerprint
from ffcore.runs.context import Study
from ffcore.runs.datasets import evaluation_split
from ffcore.runs.plan import model_of_run
from ffcore.report.tables import markdown, read_table
from ffcore.runs.training import ensure_checkpoint

def load_run_model(study: Study, run: str):
    """The run's trained model (best.pt) in eval mode on the study's device; trains it first if missing."""
    from ffcore.models import load_pretrained

    checkpoint = ensure_checkpoint(study, run)
    return load_pretrained(model_of_run(run), checkpoint).to(study.device).eval()


# Where the code that decides an AP starts: the evaluator, the inference path, and the modules that
# select and order the evaluation images (the validation index and the tree layout). Everything they
# import inside ffcore is followed (`evaluation_modules`), so a helper they come to use counts without
# a list kept by hand; the model code has a version of its own (`model_code_version`).
_EVALUATION_ROOTS = ("ffcore.eval.protocol", "ffcore.eval.inference", "ffcore.eval.predict",
                     "ffcore.eval.predictions", "ffcore.data.ground_truth", "ffcore.data.validation",
                     "ffcore.data.layout", "ffcore.postprocess", "ffcore.anchors", "ffcore.boxes",
                     "ffcore.preprocess")
_MODEL_PACKAGE = "ffcore.models"


def _ffcore_imports(name: str) -> set[str]:
    """The ffcore modules `name` imports (module level or inside functions), read from its source."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ImportError(f"evaluation code version: module {name} not found")
    found = set()
    for node in ast.walk(ast.parse(Path(spec.origin).read_text(), filename=spec.origin)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ffcore"):
            found.add(node.module)
            for alias in node.names:      # `from ffcore.eval import protocol` imports a module
                if importlib.util.find_spec(node.module).submodule_search_locations is not None and \
                        importlib.util.find_spec(f"{node.module}.{alias.name}") is not None:
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ffcore"))
    return found


def evaluation_modules() -> tuple[str, ...]:
    """Every ffcore module reachable by import from `_EVALUATION_ROOTS`, the model package left out."""
    seen, pending = set(), list(_EVALUATION_ROOTS)
    while pending:
        name = pending.pop()
        if name in seen or name == _MODEL_PACKAGE or name.startswith(_MODEL_PACKAGE + "."):
            continue
        seen.add(name)
        pending.extend(_ffcore_imports(name) - seen)
    return tuple(sorted(seen))


def evaluation_code_version() -> str:
    """SHA-256 prefix of the source files of `evaluation_modules()`, each with its name (read from disk)."""
    import hashlib
    import importlib.util

    digest = hashlib.sha256()
    for name in evaluation_modules():
        digest.update(name.encode())
        digest.update(Path(importlib.util.find_spec(name).origin).read_bytes())
    return digest.hexdigest()[:16]


def model_code_version(package_root: Path | None = None) -> str:
    """SHA-256 prefix of the files that decide what a checkpoint computes: every source file of
    `ffcore/models` (parts, assembly, registry, weight loading) and `ffcore/postprocess.py`.

    The same checkpoint under changed model code is another detector: a cached AP keyed on
    the checkpoint alone would outlive the change. Files are read from disk, by path, so a
    module nothing imported yet counts as well."""
    import hashlib

    import ffcore

    root = Path(package_root) if package_root is not None else Path(ffcore.__file__).parent
    files = sorted((root / "models").rglob("*.py")) + [root / "postprocess.py"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _cache_key(study: Study, run: str) -> dict:
    split = evaluation_split(study)
    return {"checkpoint": study.used_checkpoints[run], "model_code": model_code_version(),
            "evaluator_code": evaluation_code_version(), "scale": str(study.profile.eval_scale),
            "limit": study.profile.eval_limit, "data_root": str(study.data_root),
            "split": split.name, "evaluation_root": str(split.root),
            # the data themselves: a test split regenerated in place (another seed) is other images
            "dataset": dataset_fingerprint(study.data_root)}


def evaluate_run(study: Study, run: str):
    """The `ffcore.eval.EvalResult` of a run on the study's evaluation split (`evaluation_split`).

    Cached in results/<profile>/cache/eval_<run>.pt (a state file read with the safe loader:
    a results folder handed over cannot run code) with its key (checkpoint hash, model and
    evaluator code versions, test settings) in eval_<run>.json: a different key recomputes; a cache
    whose key matches but cannot be read is an error naming the file (delete it to recompute)."""
    import torch

    from ffcore.checkpoint import CheckpointError, load_state_file, save_state_file
    from ffcore.eval.predict import evaluate_model
    from ffcore.eval.protocol import EvalResult, PredictionMatches, SettingResult

    checkpoint = ensure_checkpoint(study, run)
    cache, key_file = study.cache_dir / f"eval_{run}.pt", study.cache_dir / f"eval_{run}.json"
    key = _cache_key(study, run)
    if cache.is_file() and key_file.is_file() and json.loads(key_file.read_text()) == key:
        try:
            return load_state_file(cache, (EvalResult, SettingResult, PredictionMatches))
        except CheckpointError as exc:
            raise RuntimeError(f"AP cache {cache} matches its key but cannot be read ({type(exc).__name__}: {exc}); "
                               f"delete it (and {key_file.name}) to recompute") from exc
    model = load_run_model(study, run)
    with torch.inference_mode():
        result = evaluate_model(model, evaluation_split(study).root, scale=study.profile.eval_scale, device=study.device,
                                limit=study.profile.eval_limit, out_dir=study.predictions_dir / run,
                                progress=False, checkpoint=checkpoint)
    study.cache_dir.mkdir(parents=True, exist_ok=True)
    save_state_file(cache, result)
    key_file.write_text(json.dumps(key, indent=1) + "\n")
    return result


def _intervals(study: Study, run: str) -> dict:
    """setting -> Interval (AP fraction) of a run, from `resamples` draws of the evaluation images."""
    from ffcore.eval.bootstrap import ap_intervals

    return ap_intervals(evaluate_run(study, run), resamples=study.profile.bootstrap_resamples, seed=study.profile.seed)


def ap_frame(study: Study, runs: list[str]) -> pd.DataFrame:
    """AP (%) per run and setting with its 95 % bootstrap interval over the evaluation images, parameter
    counts and what the weights were trained on (no artifact written)."""
    from ffcore.study.architecture import model_summary
    from ffcore.runs.plan import trained_on

    rows = []
    for run in runs:
        result = evaluate_run(study, run)
        intervals = _intervals(study, run)
        summary = model_summary(model_of_run(run), study.profile.flops_size)
        row = {"run": run, "trained on": trained_on(study.profile, study.dataset, run), "parameters": summary["parameters"]}
        for s in SETTINGS:
            interval = intervals[s].scaled(100)
            row[f"AP {s} %"] = round(interval.estimate, 2)
            row[f"{s} CI low"] = round(interval.low, 2)
            row[f"{s} CI high"] = round(interval.high, 2)
        row.update({"split": evaluation_split(study).name, "images": result.num_images,
                    "checkpoint": study.used_checkpoints[run]})
        rows.append(row)
    return pd.DataFrame(rows)


def ap_headline(table: pd.DataFrame) -> str:
    return "; ".join(f"{row['run']}: " + "/".join(f"{row[f'AP {s} %']:.1f}" for s in SETTINGS)
                     + f" (E/M/H AP %, hard 95% CI {row['hard CI low']:.1f}-{row['hard CI high']:.1f})"
                     for _, row in table.iterrows())


def evaluate_runs(study: Study, runs: list[str], name: str = "ap") -> pd.DataFrame:
    """WIDER FACE-protocol AP (easy / medium / hard) of runs on the study's evaluation split, each with
    its 95 % bootstrap interval over the evaluation images."""
    table = ap_frame(study, runs)
    scale = study.profile.eval_scale
    split = evaluation_split(study)
    study.save_table(table, name, checkpoints=runs, test_scale=str(scale), split=split.name,
                     resamples=study.profile.bootstrap_resamples,
                     caption=f"AP on the {split.note} (WIDER FACE protocol, test scale {scale}) with 95% "
                             f"bootstrap intervals over its images ({study.profile.bootstrap_resamples} "
                             "resamples)",
                     headline=ap_headline(table))
    return table


def what_this_shows(study: Study, name: str):
    """"What this shows", from an artifact's sidecar headline (its numbers are the artifact's own)."""
    for sidecar in (study.tables_dir / f"{name}.json", study.figures_dir / f"{name}.json"):
        if sidecar.is_file():
            record = json.loads(sidecar.read_text())
            return markdown(f"**What this shows.** {record['headline']}.")
    raise FileNotFoundError(f"no artifact named {name!r} in {study.tables_dir} or {study.figures_dir}; "
                            "run the cell that writes it first")


def describe_ap_table(study: Study, name: str = "ap"):
    """A "what this shows" paragraph for an AP table, its numbers read from the written table."""
    table = read_table(study, name)
    lines = []
    for _, row in table.iterrows():
        lines.append(f"**{row['run']}** ({row['trained on']}): AP easy {row['AP easy %']:.1f} % "
                     f"[{row['easy CI low']:.1f}, {row['easy CI high']:.1f}], medium {row['AP medium %']:.1f} % "
                     f"[{row['medium CI low']:.1f}, {row['medium CI high']:.1f}], hard {row['AP hard %']:.1f} % "
                     f"[{row['hard CI low']:.1f}, {row['hard CI high']:.1f}]")
    images = int(table["images"].iloc[0]) if len(table) else 0
    split = evaluation_split(study)
    return markdown("**What this shows.** On the " + f"{split.images(images)} of the {study.dataset} data "
                    + "(brackets: 95 % bootstrap interval over the images; each row is one training run):\n\n- "
                    + "\n- ".join(lines)
                    + f"\n\nModels whose intervals overlap widely are not told apart by this {split.name} split; "
                      "the paired comparisons say it directly, and only comparisons pooled over several training "
                      "seeds give a verdict."
                    + (" Rows trained on WIDER FACE are real detectors evaluated on the same synthetic images."
                       if study.profile.is_synthetic else ""))


# ----------------------------------------------------------------------------- comparisons

def paired_comparison(study: Study, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """For each (run, reference): AP(run) - AP(reference) per setting with the paired 95 % bootstrap
    interval (same resampled images for both). Two single runs: the verdict is "one seed: not
    established" (`ffcore.eval.bootstrap.verdict`); arms over seeds are `comparisons.seed_comparison`'s."""
    from ffcore.eval.bootstrap import paired_difference, verdict

    rows = []
    for run, reference in pairs:
        differences = paired_difference(evaluate_run(study, run), evaluate_run(study, reference),
                                        resamples=study.profile.bootstrap_resamples, seed=study.profile.seed)
        row = {"run": run, "vs": reference}
        for s in SETTINGS:
            d = differences[s].scaled(100)
            row.update({f"d{s} AP pts": round(d.estimate, 2), f"d{s} CI low": round(d.low, 2),
                        f"d{s} CI high": round(d.high, 2), f"{s} verdict": verdict(d)})
        rows.append(row)
    return pd.DataFrame(rows)


def difference_headline(table: pd.DataFrame, setting: str = "hard") -> str:
    def label(row) -> str:
        return f"pooled over seeds, {row['comparison']}" if row["run"] == "pooled" else f"{row['run']} vs {row['vs']}"

    return "; ".join(f"{label(row)}: {row[f'd{setting} AP pts']:+.1f} pts hard "
                     f"[{row[f'd{setting} CI low']:+.1f}, {row[f'd{setting} CI high']:+.1f}] "
                     f"({row[f'{setting} verdict']})" for _, row in table.iterrows())


def run_label(study: Study, run: str) -> str:
    """A legend label: `pretty_name` of the run, naming the study's teacher for a run distilled from it."""
    from ffcore.report.plotting import pretty_name

    from ffcore.runs.plan import teacher_display_name

    return pretty_name(run, teacher=teacher_display_name(study.profile))
