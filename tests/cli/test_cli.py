"""The command line: one home for parsing and handlers; every recipe field an option; recipe files;
one-line user errors with exit code 2."""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
import typing
from dataclasses import fields
from pathlib import Path

import pytest

import ffcore
from ffcore.cli import build_parser, main
from ffcore.cli.recipe import read_recipe_file
from ffcore.cli.training import RECIPE_FILE, resolve_recipe, save_recipe
from ffcore.engine.config import (BEST_METRICS, DISTILL_PRESETS, OPTIMIZERS, SCHEDULES, TRAINING_PRESETS,
                                  DistillConfig, TrainConfig, get_preset)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "ffcore"
NOT_FIELDS = ("command", "handler", "preset", "config", "resume", "distill_preset")

# A command-line value for each field, different from the smoke preset's and the default
# DistillConfig's, and what the resolved recipe must then hold.
SAMPLES: dict[str, tuple[list[str], object]] = {
    "model": (["featherface_v2"], "featherface_v2"),
    "model_overrides": (["neck_channels=48", "dropblock_prob=0.1"], {"neck_channels": 48, "dropblock_prob": 0.1}),
    "pretrained_backbone": (["none"], False),
    "data_root": (["d"], "d"),
    "val_root": (["v"], "v"),
    "image_size": (["128"], 128),
    "batch_size": (["3"], 3),
    "workers": (["2"], 2),
    "mixup_prob": (["0.25"], 0.25),
    "mixup_alpha": (["0.4"], 0.4),
    "cutmix_prob": (["0.5"], 0.5),
    "epochs": (["7"], 7),
    "optimizer": (["sgd"], "sgd"),
    "lr": (["0.02"], 0.02),
    "weight_decay": (["0.001"], 0.001),
    "momentum": (["0.8"], 0.8),
    "schedule": (["step"], "step"),
    "warmup_epochs": (["1.5"], 1.5),
    "min_lr": (["1e-4"], 1e-4),
    "onecycle_pct_start": (["0.2"], 0.2),
    "step_milestones": (["3", "5"], (3, 5)),
    "step_gamma": (["0.5"], 0.5),
    "grad_clip_norm": (["5"], 5.0),
    "loc_weight": (["1.5"], 1.5),
    "overlap_threshold": (["0.5"], 0.5),
    "restart_epochs": (["10"], 10),
    "decay_all_parameters": ([], False),          # --no-decay-all-parameters
    "out_dir": (["runs/x"], "runs/x"),
    "seed": (["3"], 3),
    "device": (["cpu"], "cpu"),
    "amp": ([], True),
    "sync_batchnorm": ([], True),
    "val_every": (["2"], 2),
    "val_scale": (["320"], 320),
    "best_metric": (["easy"], "easy"),
    "progress": ([], True),
    "tensorboard": ([], True),
    "log_every_steps": (["10"], 10),
    "max_steps_per_epoch": (["none"], None),
    "stop_after_epoch": (["1"], 1),
    "skip_unreadable_images": ([], True),
    "persistent_workers": ([], False),
    "prefetch_factor": (["4"], 4),
    "amp_dtype": (["bfloat16"], "bfloat16"),
    "channels_last": ([], True),
    "fused_optimizer": ([], True),
    "cudnn_benchmark": ([], True),
    "val_batch_size": (["3"], 3),
    "dist_timeout_minutes": (["5"], 5.0),
    "allow_world_size_change": ([], True),
    "sync_every_steps": (["10"], 10),
    "teacher": (["retinaface_mnet025"], "retinaface_mnet025"),
    "teacher_weights": (["t.pt"], "t.pt"),
    "temperature": (["2"], 2.0),
    "alpha": (["0.5"], 0.5),
    "feature_weight": (["0.2"], 0.2),
    "progressive": ([], True),
    "stage_boundaries": (["0.25", "0.5"], (0.25, 0.5)),
}
FLAGS = {"data_root": "--data", "val_root": "--val-data", "out_dir": "--out"}


def _flag(field: str, command: str) -> str:
    if field == "model" and command == "distill":
        return "--student"
    if field in FLAGS:
        return FLAGS[field]
    flag = "--" + field.replace("_", "-")
    # fields whose default is True are sampled through their --no- form
    return flag.replace("--", "--no-", 1) if field in ("decay_all_parameters", "persistent_workers") else flag


def _resolve(argv: list[str]):
    args = vars(build_parser().parse_args(argv))
    command = args["command"]
    options = {k: v for k, v in args.items() if k not in NOT_FIELDS}
    if command == "distill":
        options["distill_preset"] = args["distill_preset"]
    return resolve_recipe(options, args["config"], args["preset"], args["resume"],
                          "smoke", distill=command == "distill")


def test_command_handlers_live_only_in_the_cli_package():
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_command"):
                outside.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert outside == []


def test_the_samples_cover_every_field():
    assert set(SAMPLES) == {f.name for f in fields(TrainConfig)} | {f.name for f in fields(DistillConfig)}


@pytest.mark.parametrize("command", ["train", "distill"])
@pytest.mark.parametrize("field", [f.name for f in fields(TrainConfig)])
def test_every_train_config_field_is_an_option_of_its_declared_type(command, field):
    words, expected = SAMPLES[field]
    base = ["--preset", "smoke", "--out", "o"] + (["--teacher-weights", "t.pt"] if command == "distill" else [])
    config, _, _ = _resolve([command, *base, _flag(field, command), *words])
    value = getattr(config, field)
    assert value == expected and type(value) is type(expected)
    assert value != getattr(get_preset("smoke"), field) or (command == "distill" and field == "model")


@pytest.mark.parametrize("field", [f.name for f in fields(DistillConfig)])
def test_every_distill_config_field_is_an_option_of_distill(field):
    words, expected = SAMPLES[field]
    base = ["distill", "--out", "o"] + (["--teacher-weights", "t.pt"] if field != "teacher_weights" else [])
    _, distillation, _ = _resolve([*base, _flag(field, "distill"), *words])
    value = getattr(distillation, field)
    assert value == expected and type(value) is type(expected) and value != getattr(DistillConfig(), field)


def test_absent_options_keep_the_preset_and_distill_keeps_its_student():
    config, _, preset = _resolve(["train", "--preset", "synthetic_cpu", "--out", "o"])
    assert preset == "synthetic_cpu" and config == get_preset("synthetic_cpu", out_dir="o")
    config, distillation, _ = _resolve(["distill", "--preset", "smoke", "--out", "o", "--teacher-weights", "t.pt"])
    assert config.model == "featherface_v2" and distillation == DistillConfig(teacher_weights="t.pt")
    _, distillation, _ = _resolve(["distill", "--out", "o", "--teacher-weights", "t.pt",
                                   "--distill-preset", "v2_thesis_progressive"])
    assert distillation.progressive is True


def test_choices_come_from_the_registries():
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "preset")
    assert list(train.choices) == sorted(TRAINING_PRESETS) and "fork_eca_cbam" in train.choices
    distill = parser._subparsers._group_actions[0].choices["distill"]
    assert list(next(a for a in distill._actions if a.dest == "distill_preset").choices) == sorted(DISTILL_PRESETS)
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["train"]._actions}
    assert tuple(actions["optimizer"].choices) == OPTIMIZERS and tuple(actions["schedule"].choices) == SCHEDULES
    assert tuple(actions["best_metric"].choices) == BEST_METRICS


def test_choice_constants_are_what_the_engine_builds():
    import torch

    from ffcore.engine.schedules import build_optimizer, build_scheduler

    parameters = [torch.nn.Parameter(torch.zeros(2, 2))]
    for optimizer in OPTIMIZERS:
        build_optimizer(parameters, TrainConfig(optimizer=optimizer))
    for schedule in SCHEDULES:
        config = TrainConfig(schedule=schedule, epochs=2)
        build_scheduler(build_optimizer(parameters, config), config, steps_per_epoch=2)
    with pytest.raises(ValueError):
        build_optimizer(parameters, TrainConfig(optimizer="lion"))
    from ffcore.data.ground_truth import SETTINGS

    assert BEST_METRICS == (*SETTINGS, "loss", "final")   # "final": the last epoch, no choice among validations


def test_recipe_file_then_command_line_and_the_saved_run_yaml_repeats_the_run(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("preset: smoke\nepochs: 3\nlr: 1e-3\nstep_milestones: [1, 2]\n"
                      "model_overrides: {neck_channels: 48}\nout_dir: runs/a\n")
    config, _, preset = _resolve(["train", "--config", str(recipe), "--epochs", "5", "--out", str(tmp_path / "run")])
    assert preset == "smoke" and (config.epochs, config.lr, config.step_milestones) == (5, 1e-3, (1, 2))
    assert config.model_overrides == {"neck_channels": 48} and config.batch_size == get_preset("smoke").batch_size
    saved = save_recipe(config, None, preset, "train")
    assert saved == tmp_path / "run" / RECIPE_FILE
    again, _, _ = _resolve(["train", "--config", str(saved)])
    assert again == config
    # distill: both dataclasses in one file
    config, distillation, _ = _resolve(["distill", "--out", str(tmp_path / "kd"), "--teacher-weights", "t.pt",
                                        "--alpha", "0.4", "--stage-boundaries", "0.2", "0.6"])
    saved = save_recipe(config, distillation, "v2_thesis", "distill")
    assert set(read_recipe_file(saved, list(SAMPLES) + ["preset"])) == set(SAMPLES) | {"preset"}
    assert _resolve(["distill", "--config", str(saved)])[1:] == (distillation, "v2_thesis")


def test_train_writes_run_yaml_beside_the_checkpoint(tmp_path):
    from support import write_tiny_wider_tree

    root = write_tiny_wider_tree(tmp_path / "tiny")
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--data", str(root), "--out", str(out), "--image-size", "64",
                 "--max-steps-per-epoch", "1", "--epochs", "1", "--pretrained-backbone", "none"]) == 0
    assert (out / "last.pt").is_file()
    config, _, _ = _resolve(["train", "--config", str(out / RECIPE_FILE)])
    assert (config.epochs, config.image_size, config.data_root, config.pretrained_backbone) == (1, 64, str(root), False)
    # a resume that changes the recipe is refused before anything is written
    written = (out / RECIPE_FILE).read_text()
    assert main(["train", "--out", str(out), "--resume", "--lr", "0.5"]) == 2
    assert (out / RECIPE_FILE).read_text() == written


def _one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    try:
        code = main(argv)
    except SystemExit as stop:       # argparse
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2, captured
    # (predict / evaluate / detect print their own one-line errors on stdout)
    lines = (captured.err or captured.out).strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    _one_line_error(capsys, ["train", "--preset", "nope", "--out", "o"], "invalid choice: 'nope'", "fork_eca_cbam")
    _one_line_error(capsys, ["train", "--out", "o", "--epochs", "three"], "invalid int value: 'three'")
    _one_line_error(capsys, ["train", "--preset", "smoke"], "--out")
    _one_line_error(capsys, ["train", "--model", "featherface_v9", "--out", "o"], "unknown model 'featherface_v9'")
    _one_line_error(capsys, ["train", "--config", str(tmp_path / "missing.yaml")], "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: ten\n")
    _one_line_error(capsys, ["train", "--config", str(bad), "--out", "o"], f"{bad}: epochs", "'ten'")
    bad.write_text("epochz: 3\n")
    _one_line_error(capsys, ["train", "--config", str(bad), "--out", "o"], "unknown key(s) epochz")
    bad.write_text("preset: nope\n")
    _one_line_error(capsys, ["train", "--config", str(bad), "--out", "o"], "unknown training preset 'nope'")
    bad.write_text("teacher: featherface_v1\n")      # a distillation key is not a training one
    _one_line_error(capsys, ["train", "--config", str(bad), "--out", "o"], "unknown key(s) teacher")
    _one_line_error(capsys, ["distill", "--out", "o"], "--teacher-weights")
    _one_line_error(capsys, ["distill", "--out", "o", "--teacher-weights", "t.pt", "--stage-boundaries", "0.7", "0.2"],
                    "stage_boundaries")
    _one_line_error(capsys, ["detect", "--model", "retinaface_mnet025", "--weights", str(tmp_path / "none.pt"),
                             "--image", str(tmp_path)], "no images")
    _one_line_error(capsys, ["detect", "--model", "retinaface_mnet025", "--weights", str(tmp_path / "none.pt"),
                             "--image", str(tmp_path / "gone.jpg")], "gone.jpg")


def test_evaluate_with_a_missing_ground_truth_folder_is_a_user_error(tmp_path, capsys):
    code = main(["evaluate", "--pred", str(tmp_path), "--gt", str(tmp_path / "nowhere")])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err + captured.out


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"ffcore {ffcore.__version__}"
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == ffcore.__version__


def test_models_lists_every_registered_model_with_its_parameters_and_swaps(capsys):
    from ffcore.models import create_model, list_models
    from ffcore.models.zoo import ONE_PART_SWAPS

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == set(list_models())
    v1 = sum(p.numel() for p in create_model("featherface_v1").parameters())
    assert f"{v1:,}" in rows["featherface_v1"]
    for variant, (parent, part) in ONE_PART_SWAPS.items():
        assert f"{part} of {parent}" in rows[variant]
    assert re.search(rf"{len(ONE_PART_SWAPS)} one-part swaps", lines[-1])


def test_bench_takes_a_setting_and_the_old_flag_still_works(capsys):
    parser = build_parser()
    assert parser.parse_args(["bench", "--setting", "smoke"]).setting == "smoke"
    assert parser.parse_args(["bench"]).setting == "full"
    assert parser.parse_args(["bench", "--preset", "target"]).setting == "target"
    assert "--preset is deprecated, use --setting" in capsys.readouterr().err
    _one_line_error(capsys, ["bench", "--setting", "huge"], "unknown benchmark setting 'huge'", "smoke")


def test_the_divergence_message_names_the_command_line_option():
    from ffcore.engine import trainer

    source = inspect.getsource(trainer.Trainer._stop_report)
    assert "--grad-clip-norm" in source and "--lr" in source
    options = {o for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
               for o in a.option_strings}
    assert {"--grad-clip-norm", "--lr", "--skip-unreadable-images"} <= options


def test_parser_defaults_are_the_library_defaults():
    from ffcore.cli.deploy import DEFAULT_MODELS
    from ffcore.cli.models import DEFAULT_PRUNE_RATIO
    from ffcore.eval.detect import DEFAULT_THRESHOLD
    from ffcore.deploy.export import DEFAULT_OPSET
    from ffcore.deploy.int8 import DEFAULT_CALIBRATION
    from ffcore.models import list_models
    from ffcore.pruning import DEFAULT_RATIO

    parser = build_parser()
    export = parser.parse_args(["export", "--model", "featherface_v1", "--out", "m.onnx"])
    assert (export.opset, export.calib_method) == (DEFAULT_OPSET, DEFAULT_CALIBRATION)
    assert parser.parse_args(["prune", "--model", "featherface_v1"]).ratio == DEFAULT_PRUNE_RATIO == DEFAULT_RATIO
    detect = parser.parse_args(["detect", "--model", "featherface_v1", "--image", "x.jpg"])
    assert detect.threshold == DEFAULT_THRESHOLD
    assert set(DEFAULT_MODELS) <= set(list_models())


def test_recipe_types_are_declared_types():
    # what the generated options rely on: every field's annotation resolves without torch
    hints = typing.get_type_hints(TrainConfig) | typing.get_type_hints(DistillConfig)
    assert set(hints) == set(SAMPLES)


def test_cli_help_lists_every_command(capsys):
    from ffcore.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("params", "synth", "train", "distill", "predict", "evaluate", "detect", "export", "bench"):
        assert command in out
