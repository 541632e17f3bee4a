"""The `ffcore` command line. All argument parsing of the project lives here.

Each subcommand's parser is built by one `_add_<name>` function and dispatches to a
library function named by `handler="module:function"`, imported only when that
command runs (so `ffcore --help` stays fast and importing ffcore does no work).
The handler receives the parsed options as keyword arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

MODEL_HELP = "registered model name (see `ffcore params` for the list)"


def registered_model(name: str) -> str:
    """argparse type of model options: an unknown name is refused at once, with the registered ones listed."""
    from ffcore.models.registry import UnknownModelError, model_entry

    try:
        model_entry(name)
    except UnknownModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def _add_params(sub) -> None:
    p = sub.add_parser("params", help="per-part parameter table (true count and thop's count) and FLOPs",
                       description="Print, for every registered model, a per-part parameter table with the true "
                                   "count next to the count the `thop` profiler reports, and FLOPs at 640x640 "
                                   "counted by fvcore (one multiply-add = one FLOP).")
    p.add_argument("--models", nargs="+", default=None, help="models to report (default: all registered)")
    p.add_argument("--size", type=int, default=640, help="square input size for FLOPs (default 640)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    p.add_argument("--json", dest="json_out", default=None, help="also write the tables to this JSON file")
    p.set_defaults(handler="ffcore.profile:params_command")


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic WIDER-format dataset",
                       description="Generate a deterministic synthetic face dataset (procedurally drawn faces, "
                                   "not WIDER FACE) in the real WIDER FACE layouts: RetinaFace train/label.txt, "
                                   "wider_face_split lists and the evaluation .mat files. Does nothing when the "
                                   "folder already holds the dataset of the same configuration.")
    p.add_argument("--out", default=None, help="output root (default data/synthetic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=None, help="number of training images (default 400)")
    p.add_argument("--val-images", type=int, default=None, help="number of validation images (default 100)")
    p.add_argument("--force", action="store_true", help="regenerate even if the same dataset is there")
    p.add_argument("--preview", default=None, help="also save a grid of samples with boxes and landmarks (PNG)")
    p.set_defaults(handler="ffcore.data.synth:synth_command")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="WIDER FACE AP (easy/medium/hard) of a prediction folder",
                       description="Evaluate prediction files (<event>/<image>.txt) against the official WIDER FACE "
                                   "ground truth (.mat files) with the official protocol.")
    p.add_argument("--pred", required=True, help="prediction folder (<event>/<image>.txt)")
    p.add_argument("--gt", required=True, help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat")
    p.add_argument("--json", dest="json_out", default=None, help="write {\"easy\", \"medium\", \"hard\"} APs here")
    p.add_argument("--strict", action="store_true", help="a missing prediction file is an error, not a warning")
    p.set_defaults(handler="ffcore.eval:evaluate_command")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="write WIDER-format predictions for a validation tree",
                       description="Run a model over WIDER_val/images and write <event>/<image>.txt prediction "
                                   "files plus a metadata JSON (model, checkpoint hash, scale, thresholds); "
                                   "evaluate them when the dataset has the evaluation ground truth.")
    p.add_argument("--model", required=True, type=registered_model, help=MODEL_HELP)
    p.add_argument("--weights", default=None, help="checkpoint (ffcore or original layout)")
    p.add_argument("--data", default=None, help="dataset root (default data/widerface)")
    p.add_argument("--out", required=True, help="output folder for prediction files")
    p.add_argument("--scale", default="origin",
                   help="origin | vga | <int> (long side) | short1600max2150 (Pytorch_Retinaface's test scale) "
                        "(default origin)")
    p.add_argument("--caps", default="none", choices=("none", "fork"),
                   help="detection caps: none (the released test scripts) or fork (top 5000 before NMS, "
                        "750 kept after, as the thesis fork's script) (default none)")
    p.add_argument("--multiscale", action="store_true", help="add passes at 0.5x and 1.5x the test scale")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped passes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (quick checks; no AP)")
    p.add_argument("--gt", default=None, help="ground-truth folder to evaluate against (default: the dataset's)")
    p.set_defaults(handler="ffcore.eval.predict:predict_command")


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="detect faces in an image or a folder of images",
                       description="Detect faces; write a JSON list of {box, score, landmarks} in pixels and/or "
                                   "an annotated image.")
    p.add_argument("--model", required=True, type=registered_model, help=MODEL_HELP)
    p.add_argument("--weights", default=None, help="checkpoint (ffcore or original layout)")
    p.add_argument("--image", required=True, help="image file or folder of images")
    p.add_argument("--json", dest="json_out", default=None, help="output JSON (a folder when --image is a folder)")
    p.add_argument("--save", default=None, help="annotated image (a folder when --image is a folder)")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum score written and drawn (default 0.5)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler="ffcore.eval.detect:detect_command")


def _add_training_options(p) -> None:
    """Options shared by `train` and `distill` (each overrides one field of the preset's TrainConfig)."""
    p.add_argument("--data", default=None, help="WIDER-format dataset root (default data/widerface)")
    p.add_argument("--val-data", default=None, help="root with WIDER_val and the evaluation .mat files "
                                                   "(default: --data)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="per process (global = this x world size)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--val-every", type=int, default=None, help="epochs between validations (0: never)")
    p.add_argument("--val-scale", default=None, help="validation scale: origin | vga | <long side in pixels>")
    p.add_argument("--best-metric", default=None, choices=("easy", "medium", "hard", "loss"),
                   help="what best.pt is chosen by")
    p.add_argument("--no-amp", action="store_true", help="train in FP32 (the presets' default)")
    p.add_argument("--amp", action="store_true",
                   help="float16 mixed precision on CUDA (recorded as the run's precision in metrics and checkpoints)")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap steps per epoch (quick checks)")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from <out>/last.pt with its saved recipe")
    p.add_argument("--skip-unreadable-images", action="store_true", default=None,
                   help="skip a missing or undecodable training image (logged and counted) instead of stopping")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a detector (resumable; torchrun for multi-GPU)",
                       description="Train a registered model on a WIDER-format dataset: a preset recipe with "
                                   "command-line overrides. Writes last.pt (every epoch), best.pt, metrics.csv, "
                                   "train.log and TensorBoard scalars to --out. Launch with torchrun "
                                   "(--nproc_per_node=N -m ffcore train ...) for DDP.")
    p.add_argument("--model", default=None, type=registered_model, help=MODEL_HELP + " (default: the preset's)")
    p.add_argument("--preset", default="featherface_paper",
                   help="training recipe: featherface_paper | v2_thesis | retinaface_paper | smoke | synthetic_cpu")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    _add_training_options(p)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--mixup-prob", type=float, default=None, help="share of samples mixed with MixUp (lam-weighted)")
    p.add_argument("--cutmix-prob", type=float, default=None, help="share of samples mixed with CutMix")
    p.add_argument("--pretrained-backbone", default=None,
                   help="ImageNet MobileNet-0.25 file, or 'none' (default: found automatically)")
    p.set_defaults(handler="ffcore.engine.train:train_command")


def _add_distill(sub) -> None:
    p = sub.add_parser("distill", help="knowledge distillation teacher -> featherface_v2",
                       description="Train a student (default featherface_v2) with (1-a)*task + a*T^2*KL + "
                                   "lambda*MSE(features) from a frozen teacher. Same outputs as `train`; "
                                   "feature adapters are saved apart from the student's weights.")
    p.add_argument("--teacher", required=True, type=registered_model,
                   help="teacher model name (featherface_v1, retinaface_mnet025, ...)")
    p.add_argument("--teacher-weights", required=True, help="teacher checkpoint")
    p.add_argument("--student", default="featherface_v2", type=registered_model)
    p.add_argument("--preset", default="v2_thesis")
    p.add_argument("--out", required=True)
    p.add_argument("--temperature", type=float, default=None, help="softening temperature T (default 4)")
    p.add_argument("--alpha", type=float, default=None, help="weight of the KD term (default 0.7)")
    p.add_argument("--feature-weight", type=float, default=None, help="weight of the feature MSE (default 0.1)")
    p.add_argument("--progressive", action="store_true", default=None,
                   help="progressive distillation: feature levels P5, then P4-P5, then P3-P5 over thirds of the run")
    _add_training_options(p)
    p.set_defaults(handler="ffcore.engine.distill:distill_command")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="ONNX export with an ONNX Runtime parity check (and INT8)",
                       description="Export a model to ONNX (dynamic batch, H, W; opset >= 19; V1's deformable "
                                   "convolutions become ONNX DeformConv) and check it against PyTorch in ONNX "
                                   "Runtime (max |diff| <= 1e-4 on loc, conf, landm at each parity size).")
    p.add_argument("--model", required=True, type=registered_model, help=MODEL_HELP)
    p.add_argument("--weights", default=None)
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=19, help="ONNX opset (>= 19, default 19)")
    p.add_argument("--parity-sizes", nargs="+", default=["640", "480x640"], metavar="SIZE",
                   help="input sizes of the parity check, N or HxW (default 640 480x640)")
    p.add_argument("--int8", action="store_true", help="also write a statically quantised INT8 model (<out>_int8.onnx)")
    p.add_argument("--calib-data", default=None,
                   help="WIDER-format dataset root for INT8 calibration images (default: the synthetic dataset)")
    p.add_argument("--calib-count", type=int, default=32, help="number of calibration images (default 32)")
    p.add_argument("--ap", action="store_true", help="with --int8: report the AP change on the calibration "
                                                      "dataset's validation split")
    p.add_argument("--literal", action="store_true",
                   help="write the literal graph of the trained modules instead of the deploy graph "
                        "(batch norm and shuffles folded, heads merged, compact attention: exact rewrites)")
    p.add_argument("--calib-method", default="percentile", choices=("minmax", "percentile", "entropy"),
                   help="with --int8: activation range calibration (default percentile)")
    p.set_defaults(handler="ffcore.export:export_command")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency / memory / size benchmark of models and peers",
                       description="Time PyTorch eager and ONNX Runtime (FP32, INT8) at 640x640 and VGA; "
                                   "medians of repeated runs after warm-up, all runners interleaved so that "
                                   "ratios hold on a loaded machine.")
    p.add_argument("--models", nargs="+", default=None,
                   help="models (default retinaface_mnet025 featherface_v1 featherface_v2; the first is the "
                        "reference of the printed ratios)")
    p.add_argument("--weights", nargs="+", default=None, metavar="NAME=PATH", help="checkpoints per model")
    p.add_argument("--preset", default="full", help="benchmark matrix: full | target | smoke (default full)")
    p.add_argument("--sizes", nargs="+", default=None, metavar="SIZE", help="override sizes, N or HxW")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="override batch sizes")
    p.add_argument("--threads", nargs="+", type=int, default=None, help="override thread counts")
    p.add_argument("--backends", nargs="+", default=None, help="override: torch onnx_fp32 onnx_int8")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per setting (preset default)")
    p.add_argument("--peers", action="store_true",
                   help="include the peer detectors that start in this environment (they live in .venv-peers: "
                        "`make peers`; benchmarks/bench_peers.py times them on the real photos)")
    p.add_argument("--out", default=None, help="CSV output")
    p.add_argument("--figure", default=None, help="latency figure output (png/pdf)")
    p.set_defaults(handler="ffcore.bench:bench_command")


def _add_prune(sub) -> None:
    p = sub.add_parser("prune", help="structured L1 pruning of the SSH context modules",
                       description="Remove a fraction of every SSH's internal channels (lowest L1 filter norm); "
                                   "print parameters and FLOPs before and after; optionally save the pruned model.")
    p.add_argument("--model", required=True, type=registered_model, help=MODEL_HELP)
    p.add_argument("--weights", default=None)
    p.add_argument("--ratio", type=float, default=0.2, help="fraction of SSH internal channels removed (default 0.2)")
    p.add_argument("--out", default=None, help="write the pruned model as an ffcore checkpoint")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.set_defaults(handler="ffcore.pruning:prune_command")


_SECTIONS = (_add_params, _add_synth, _add_train, _add_distill, _add_predict, _add_evaluate,
             _add_detect, _add_export, _add_bench, _add_prune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ffcore",
        description="FeatherFace V1/V2 face detection: models, training, distillation, WIDER FACE evaluation.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for add in _SECTIONS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    args.pop("command")
    module_name, function_name = args.pop("handler").split(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    from ffcore.checkpoint import CheckpointError     # torch-free; what every weights-reading command may raise

    try:
        return int(handler(**args) or 0)
    except CheckpointError as exc:       # a missing, damaged, unsafe or mismatched checkpoint: a message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
