#!/usr/bin/env python
"""Run the study: the profile's trainings, then the five notebooks; `ffcore study run` under the name
the thesis gives it.

    python run_all.py                       # full with WIDER FACE + CUDA, else synthetic (see results/synthetic/summary.md)
    python run_all.py --profile smoke       # tiny synthetic set, a few minutes: checks the pipeline
    python run_all.py --profile full --data data/widerface --device cuda
    python run_all.py --only 03 --force     # one notebook, retraining what it trains
    python run_all.py --profile synthetic --in-place   # refresh the committed notebooks
    python run_all.py --profile full --launcher slurm --partition gpu   # the trainings as SLURM jobs

Every option is `ffcore study run`'s (`python run_all.py --help`), the cluster options those of
`ffcore study submit`: one parser, in ffcore/cli/study.py.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ffcore.cli.study import build_run_parser, run_command

    args = build_run_parser("run_all.py").parse_args(argv)
    return run_command(prog="run_all.py", **vars(args))


if __name__ == "__main__":
    sys.exit(main())
