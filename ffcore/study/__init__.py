"""The functions the study notebooks call: one call per cell, each returning a table or a figure.

    from ffcore import study
    ctx = study.open_study("smoke")                 # profile, data (generated if synthetic), device
    study.parameter_table(ctx, "featherface_v1")    # DataFrame, also written to results/<profile>/tables/
    study.train_or_load(ctx, "featherface_v1")      # reuses results/<profile>/checkpoints/<run>/best.pt
    study.pr_curves_figure(ctx, ["featherface_v1"]) # Figure, also written to thesis_figures/<profile>/

Every table goes through `ffcore.report.provenance.write_table` (CSV + LaTeX + sidecar JSON) and
every figure through `write_figure` (PDF + PNG + sidecar JSON); `summary_table` writes
results/<profile>/summary.md listing them all with their headline numbers.
"""

from __future__ import annotations

from ffcore.study.ablations import (ablation_figure, ablation_models, ablation_table, ablation_variants,
                                   describe_comparison, describe_pruned, one_part_swaps, placebo_check, pruned_table,
                                   v2_variants_table)
from ffcore.study.architecture import (claims_table, compare_parts_table, efficiency_table, flops_table,
                                       model_summary, parameter_count_explanation, parameter_table, parts_figure,
                                       shape_compatibility)
from ffcore.study.budget import (budget_differences, budget_figure, budget_table, describe_budget,
                                 describe_own_recipe, own_recipe_comparison)
from ffcore.study.benchmarks import benchmark_table, latency_figure, measured_benchmark, published_comparison_figure
from ffcore.runs.context import DatasetMissingError, Study, open_study
from ffcore.study.gate_health import describe_gate_health, gate_health_table
from ffcore.study.fork_models import (attention_maps_figure, fork_detections_figure, fork_parameter_table,
                                      fork_training_log_figure, fork_weights_table)
from ffcore.study.comparisons import arm_runs, describe_distillation, describe_v2_v1, distillation_comparison, v2_v1_comparison
from ffcore.study.ap_figures import ap_bars_figure, differences_figure, intervals_figure, pr_curves_figure
from ffcore.study.detections import (dataset_preview_figure, describe_real_photo_check, real_photo_check,
                                     real_photo_detections_figure, validation_detections_figure)
from ffcore.study.evaluation import describe_ap_table, evaluate_run, evaluate_runs, paired_comparison, what_this_shows
from ffcore.study.onnx_latency import (deploy_ladder_table, deploy_latency_table, describe_deployment,
                                 operator_profile_table)
from ffcore.study.peer_detectors import peer_detections_figure, peer_latency_figure, peer_latency_table
from ffcore.study.released_v1 import released_v1_anchor_table
from ffcore.report.summary import artifact_index, summary_table, write_summary
from ffcore.runs.plan import planned_runs, reference_runs
from ffcore.runs.training import study_run
from ffcore.study.training_tables import (distill_or_load, distillation_runs, finetune_pruned_or_load, run_history,
                                          seed_runs_table, train_or_load, training_curves_figure,
                                          widerface_teacher_table)

__all__ = [
    "DatasetMissingError", "Study", "open_study",
    "parameter_table", "parameter_count_explanation", "flops_table", "compare_parts_table", "parts_figure",
    "claims_table", "shape_compatibility", "efficiency_table", "model_summary",
    "dataset_preview_figure", "train_or_load", "distill_or_load", "run_history", "training_curves_figure",
    "seed_runs_table", "study_run", "finetune_pruned_or_load", "planned_runs", "reference_runs", "distillation_runs",
    "widerface_teacher_table",
    "evaluate_run", "evaluate_runs", "pr_curves_figure", "ap_bars_figure", "validation_detections_figure",
    "real_photo_detections_figure", "real_photo_check", "describe_real_photo_check",
    "describe_ap_table", "intervals_figure", "paired_comparison", "distillation_comparison",
    "describe_distillation", "differences_figure", "what_this_shows",
    "arm_runs", "v2_v1_comparison", "describe_v2_v1", "gate_health_table", "describe_gate_health",
    "ablation_models", "ablation_variants", "ablation_table", "ablation_figure", "one_part_swaps",
    "v2_variants_table", "pruned_table", "placebo_check",
    "budget_table", "budget_differences", "budget_figure", "describe_budget", "own_recipe_comparison",
    "describe_own_recipe", "describe_comparison", "describe_pruned",
    "benchmark_table", "measured_benchmark", "latency_figure", "published_comparison_figure",
    "fork_detections_figure", "fork_training_log_figure", "fork_weights_table", "fork_parameter_table",
    "attention_maps_figure", "deploy_latency_table", "deploy_ladder_table", "operator_profile_table",
    "describe_deployment", "peer_latency_table", "peer_latency_figure", "peer_detections_figure",
    "artifact_index", "summary_table", "write_summary",
    "released_v1_anchor_table",
]
