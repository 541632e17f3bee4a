"""The command line: one home for parsing and handlers, training options derived from TrainConfig."""

from __future__ import annotations

import ast
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from ffcore.cli import build_parser
from ffcore.cli.training import (TRAIN_ONLY_OPTIONS, TRAINING_OPTIONS, FieldType, parse_pretrained_backbone,
                                 training_config)
from ffcore.engine.config import TrainConfig, get_preset

PACKAGE = Path(__file__).resolve().parents[1] / "ffcore"
CONFIG_TYPES = typing.get_type_hints(TrainConfig)


def test_command_handlers_live_only_in_the_cli_package():
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_command"):
                outside.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert outside == []


@pytest.mark.parametrize("option", TRAINING_OPTIONS + TRAIN_ONLY_OPTIONS, ids=lambda o: o.field)
def test_every_training_option_overrides_one_config_field_with_its_type(option):
    assert option.field in {f.name for f in fields(TrainConfig)}
    if option.switch:
        assert CONFIG_TYPES[option.field] is bool
    elif option.parse is None:
        # the converter is the declared type itself (int | None -> int)
        declared = {t for t in typing.get_args(CONFIG_TYPES[option.field]) or [CONFIG_TYPES[option.field]]}
        assert FieldType(option.field).target() in declared


def test_train_and_distill_share_the_training_options():
    parser = build_parser()
    train = vars(parser.parse_args(["train", "--out", "o"]))
    distill = vars(parser.parse_args(["distill", "--teacher", "featherface_v1", "--teacher-weights", "t.pt",
                                      "--out", "o"]))
    shared = {o.field for o in TRAINING_OPTIONS}
    assert shared <= set(train) and shared <= set(distill)
    assert {o.field for o in TRAIN_ONLY_OPTIONS} <= set(train)
    assert not {o.field for o in TRAIN_ONLY_OPTIONS} & set(distill)
    assert all(train[name] is None for name in shared)          # absent: the preset's value


def test_options_parse_to_the_config_types_and_override_the_preset():
    args = vars(build_parser().parse_args([
        "train", "--preset", "smoke", "--out", "runs/x", "--epochs", "3", "--lr", "0.02", "--data", "d",
        "--val-scale", "320", "--best-metric", "easy", "--no-amp", "--pretrained-backbone", "none",
        "--skip-unreadable-images", "--max-steps-per-epoch", "5"]))
    assert args["epochs"] == 3 and isinstance(args["epochs"], int)
    assert args["lr"] == 0.02 and args["val_scale"] == 320 and args["amp"] is False
    assert args["pretrained_backbone"] is False and args["skip_unreadable_images"] is True
    options = {o.field: args[o.field] for o in TRAINING_OPTIONS + TRAIN_ONLY_OPTIONS}
    config = training_config(args["preset"], args["out"], False, {"model": args["model"], **options})
    smoke = get_preset("smoke")
    assert (config.epochs, config.lr, config.data_root, config.val_scale) == (3, 0.02, "d", 320)
    assert config.best_metric == "easy" and config.max_steps_per_epoch == 5 and config.out_dir == "runs/x"
    assert config.model == smoke.model and config.batch_size == smoke.batch_size     # not given: the preset's
    assert parse_pretrained_backbone("weights/mnet.pth") == "weights/mnet.pth"


def test_amp_switches_both_ways_and_a_bad_number_is_refused(capsys):
    parser = build_parser()
    assert parser.parse_args(["train", "--out", "o", "--amp"]).amp is True
    assert parser.parse_args(["train", "--out", "o", "--no-amp"]).amp is False
    assert parser.parse_args(["train", "--out", "o"]).amp is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--out", "o", "--epochs", "three"])
    assert "invalid epochs value: 'three'" in capsys.readouterr().err


def test_parser_defaults_are_the_library_defaults():
    from ffcore.cli.deploy import DEFAULT_MODELS
    from ffcore.cli.models import DEFAULT_PRUNE_RATIO
    from ffcore.eval.detect import DEFAULT_THRESHOLD
    from ffcore.export import DEFAULT_CALIBRATION, DEFAULT_OPSET
    from ffcore.models import list_models
    from ffcore.pruning import DEFAULT_RATIO

    parser = build_parser()
    export = parser.parse_args(["export", "--model", "featherface_v1", "--out", "m.onnx"])
    assert (export.opset, export.calib_method) == (DEFAULT_OPSET, DEFAULT_CALIBRATION)
    assert parser.parse_args(["prune", "--model", "featherface_v1"]).ratio == DEFAULT_PRUNE_RATIO == DEFAULT_RATIO
    detect = parser.parse_args(["detect", "--model", "featherface_v1", "--image", "x.jpg"])
    assert detect.threshold == DEFAULT_THRESHOLD
    assert set(DEFAULT_MODELS) <= set(list_models())
