"""The `ffcore` command line: all argument parsing and every command handler of the project.

The library returns values (tables, results, paths); this package is the only place that
turns them into printed reports and exit codes. One module per command group:

- `ffcore.cli.models`: `params`, `models`, `prune` (parameter / FLOP accounting, pruning);
- `ffcore.cli.data`: `synth` (the synthetic WIDER-format dataset);
- `ffcore.cli.training`: `train`, `distill` (options generated from `TrainConfig` / `DistillConfig`
  by `ffcore.cli.recipe`);
- `ffcore.cli.evaluation`: `predict`, `evaluate`, `detect`;
- `ffcore.cli.deploy`: `export`, `bench`;
- `ffcore.cli.study`: `study plan | status | train | submit` (a profile's trainings as jobs).
- `ffcore.cli.thesis`: `thesis` (the results chapter of a profile).

Each group module has `add_<command>(sub)` functions, listed once in `COMMANDS`, and
`<command>_command(**options) -> int` handlers. The group modules import only the standard
library and torch-free parts of ffcore at module level; a handler imports the heavy libraries
(torch, OpenCV, pandas, ...) when it runs, so `ffcore --help` stays fast and `import ffcore`
does no work (tests/cli/test_startup.py checks which modules each command imports).

User errors (a bad option or value, a missing file, an unreadable checkpoint) end in one line
on stderr and exit code 2, never in a traceback (`ffcore.cli.common.USER_ERRORS`).
"""

from __future__ import annotations

import sys
from typing import Callable

import ffcore
from ffcore.cli import data, deploy, evaluation, models, study, thesis, training
from ffcore.cli.common import EXIT_USAGE, MODEL_HELP, Parser, error_line, registered_model, user_error_types

__all__ = ["COMMANDS", "MODEL_HELP", "build_parser", "main", "registered_model"]

# Each function adds one subcommand; `ffcore --help` lists them in this order. A new command
# group: a module with `add_<command>(sub)` functions, imported above and listed here.
COMMANDS: tuple[Callable, ...] = (
    models.add_params,
    models.add_models,
    data.add_synth,
    training.add_train,
    training.add_distill,
    evaluation.add_predict,
    evaluation.add_evaluate,
    evaluation.add_detect,
    deploy.add_export,
    deploy.add_bench,
    models.add_prune,
    study.add_study,
    thesis.add_thesis,
)


def build_parser() -> Parser:
    parser = Parser(prog="ffcore",
                    description="FeatherFace V1/V2 face detection: models, training, distillation, WIDER FACE "
                                "evaluation.")
    parser.add_argument("--version", action="version", version=f"ffcore {ffcore.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    handler = args.pop("handler")
    try:
        return int(handler(**args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_error_types() as exc:     # bad input, not a bug: one line, no traceback
        print(f"ffcore {command}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
