"""Coverage of the seed-level 95 % intervals, by simulation: the two-stage t interval the study uses
against the two-level percentile bootstrap it replaced (seeds drawn with replacement after the images).

Prints, for each scenario of `ffcore.eval.interval_coverage.SCENARIOS` and 3 / 5 seeds per arm
(paired by seed), the fraction of simulated studies whose interval contains the true difference.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_interval_coverage.py [--trials 1000] [--resamples 400]
"""

from __future__ import annotations

import argparse

import numpy as np

from ffcore.eval.interval_coverage import SCENARIOS, coverage, two_stage_method


def two_level_percentile_method(arm_values, arm_samples, reference_values, reference_samples, images, paired, level):
    """The replaced method: every image resample also draws the seed pairs with replacement; the interval is
    the percentile interval of the resampled mean differences."""
    rng = np.random.default_rng(0)
    differences = arm_samples - reference_samples             # [seeds, R], paired by seed
    seeds, resamples = differences.shape
    draws = rng.integers(0, seeds, size=(resamples, seeds))
    means = differences[draws, np.arange(resamples)[:, None]].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=400)
    args = parser.parse_args()
    print(f"coverage of 95 % intervals, {args.trials} simulated studies each, {args.resamples} image resamples")
    print(f"{'scenario':<18}{'seeds':>6}{'two-stage t':>14}{'two-level percentile':>24}")
    for scenario in SCENARIOS:
        for seeds in (3, 5):
            new = coverage(two_stage_method, scenario, seeds, args.trials, args.resamples)
            old = coverage(two_level_percentile_method, scenario, seeds, args.trials, args.resamples)
            print(f"{scenario.name:<18}{seeds:>6}{100 * new:>13.1f}%{100 * old:>23.1f}%")


if __name__ == "__main__":
    main()
