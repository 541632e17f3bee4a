"""The `ffcore` command line: all argument parsing and every command handler of the project.

The library returns values (tables, results, paths); this package is the only place that
turns them into printed reports and exit codes. One module per command group:

- `ffcore.cli.models`: `params`, `prune` (parameter / FLOP accounting, pruning);
- `ffcore.cli.data`: `synth` (the synthetic WIDER-format dataset);
- `ffcore.cli.training`: `train`, `distill` (options derived once from `TrainConfig`);
- `ffcore.cli.evaluation`: `predict`, `evaluate`, `detect`;
- `ffcore.cli.deploy`: `export`, `bench`;
- `ffcore.cli.thesis`: `thesis` (the results chapter of a profile).

Each group module has `add_parsers(sub)` and `<name>_command(**options) -> int` handlers.
The group modules import only the standard library at module level; a handler imports the
heavy libraries (torch, OpenCV, pandas, ...) when it runs, so `ffcore --help` stays fast and
`import ffcore` does no work.
"""

from __future__ import annotations

import argparse
import sys

from ffcore.cli import data, deploy, evaluation, models, thesis, training
from ffcore.cli.common import MODEL_HELP, registered_model

__all__ = ["MODEL_HELP", "build_parser", "main", "registered_model"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ffcore",
        description="FeatherFace V1/V2 face detection: models, training, distillation, WIDER FACE evaluation.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    # The order of `ffcore --help`'s command list.
    models.add_params(sub)
    data.add_synth(sub)
    training.add_train(sub)
    training.add_distill(sub)
    evaluation.add_predict(sub)
    evaluation.add_evaluate(sub)
    evaluation.add_detect(sub)
    deploy.add_export(sub)
    deploy.add_bench(sub)
    models.add_prune(sub)
    thesis.add_thesis(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    args.pop("command")
    handler = args.pop("handler")
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
