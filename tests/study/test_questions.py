"""The full study designed by its questions: three seeds a side for every comparison the thesis states,
each question's cost, and the smallest difference it can establish from the measured seed spreads."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ffcore.study.questions import (question_budget, reference_measurements, smallest_difference,
                                    study_questions, widerface_seed_spread)
from ffcore.runs.profiles import get_profile


def test_the_widerface_spread_is_read_from_the_two_trainings_with_their_provenance():
    measurements = reference_measurements()
    trainings = measurements["widerface_v1_trainings"]
    assert len(trainings) == 2 and all(t["printed_in"] and t["weights"] for t in trainings)
    spread = widerface_seed_spread(measurements)
    for s in ("easy", "medium", "hard"):
        assert spread[s] == pytest.approx(abs(trainings[0]["ap_percent"][s] - trainings[1]["ap_percent"][s]), abs=0.01)


def test_the_smallest_difference_is_the_half_width_of_a_t_interval_over_the_seed_pairs():
    assert smallest_difference(2.0, 3) == pytest.approx(stats.t.ppf(0.975, 2) * 2.0 / np.sqrt(3))
    assert smallest_difference(2.0, 5) < smallest_difference(2.0, 3)
    assert np.isnan(smallest_difference(2.0, 1))


def test_full_gives_every_stated_comparison_three_seeds_a_side_and_prints_its_cost():
    profile = get_profile("full")
    table = question_budget(profile, images_per_second=200.0, train_images=12880).set_index("question")
    stated = [q.text for q in study_questions(profile) if "WIDER FACE teacher" not in q.text]   # one shared teacher run
    assert any("Placebo" in q for q in stated) and "Is V2 lower than V1?" in stated
    for question in stated:
        assert table.loc[question, "arm seeds"] >= 3 and table.loc[question, "vs seeds"] >= 3, question
        assert np.isfinite(table.loc[question, "hard: WIDER FACE spread"]), question
    # each run is paid for once: the questions and the rest add up to the plan
    total = table.loc["total"]
    assert table.drop(index="total")["new epochs"].sum() == total["new epochs"]
    assert total["new GPU-h"] == pytest.approx(total["new epochs"] * 12880 / 200.0 / 3600, abs=0.1)


def test_study_plan_prints_the_question_budget(capsys):
    from ffcore.cli.study import plan_command

    assert plan_command("plan", "smoke") == 0
    out = capsys.readouterr().out
    assert "questions of profile smoke" in out and "GPU-hours" in out and "Is V2 lower than V1?" in out


def test_the_readme_states_the_full_profile_as_the_plan_counts_it():
    import re
    from pathlib import Path

    from ffcore.runs.plan import study_plan

    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "running.md").read_text().split())   # one line
    stated = re.search(r"The `full` profile is (\d+) trainings and ([\d,]+) WIDER FACE epochs", text)
    assert stated, "docs/running.md: the full profile's size sentence is missing"
    plan = study_plan(get_profile("full"))
    assert (int(stated[1]), int(stated[2].replace(",", ""))) == (len(plan), sum(job.epochs for job in plan))
    hours = question_budget(get_profile("full"), 207.0, 12880).iloc[-1]["new GPU-h"]
    assert re.search(rf"about {round(hours)} GPU-hours in all, {hours / 24:.1f} GPU-days", text)
