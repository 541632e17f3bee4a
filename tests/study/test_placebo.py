"""The placebo swap: a V1 whose heads are laid out as V2's computes what V1 computes, is labelled as the
noise floor in the comparison tables, and its interval is checked to contain 0."""

from __future__ import annotations

import pandas as pd

from ffcore.study.ablations import PLACEBO, _placebo_note, _role, placebo_rows


def _row(model, role, d, low, high, verdict="inside the noise"):
    row = {"model": model, "vs": "featherface_v1", "role": role, "seeds": "3 vs 3, paired by seed"}
    for s in ("easy", "medium", "hard"):
        row.update({f"d{s} AP pts": d, f"d{s} CI low": low, f"d{s} CI high": high, f"{s} verdict": verdict})
    return row


def test_every_placebo_is_a_one_part_swap_with_its_base_parameter_count():
    from ffcore.models import create_model
    from ffcore.models.zoo import ONE_PART_SWAPS, PLACEBO_SWAPS

    assert PLACEBO_SWAPS, "the study declares at least one placebo"
    for placebo in PLACEBO_SWAPS:
        base = ONE_PART_SWAPS[placebo][0]
        count = [sum(p.numel() for p in create_model(name).parameters()) for name in (placebo, base)]
        assert count[0] == count[1], f"{placebo}: {count[0]} parameters, its base {base} {count[1]}"
        assert _role(placebo, base) == PLACEBO
    assert _role("featherface_v1_bifpn_light", "featherface_v1") == "swap"
    assert _role("featherface_v1", "featherface_v1") == "reference"


def test_the_placebo_check_passes_when_every_interval_contains_zero_and_names_what_fails():
    table = pd.DataFrame([_row("featherface_v1_bifpn_light", "swap", -2.8, -5.1, -0.4, "lower"),
                          _row("featherface_v1_v2_heads", PLACEBO, -1.1, -3.2, 1.1)])
    rows = placebo_rows(table)
    assert list(rows["model"].unique()) == ["featherface_v1_v2_heads"] and rows["passes"].all() and len(rows) == 3
    assert "contains 0 on every setting" in _placebo_note(table, "featherface_v1")
    table.loc[1, "dhard CI high"] = -0.2
    failed = placebo_rows(table)
    assert list(failed.loc[~failed["passes"], "setting"]) == ["hard"]
    assert "does NOT contain 0 on hard" in _placebo_note(table, "featherface_v1")


def test_a_table_without_a_placebo_has_nothing_to_check():
    table = pd.DataFrame([_row("featherface_v1_bifpn_light", "swap", -2.8, -5.1, -0.4, "lower")])
    assert placebo_rows(table).empty and _placebo_note(table, "featherface_v1") == ""


def test_the_reference_synthetic_profile_trains_the_placebo():
    from ffcore.models.zoo import PLACEBO_SWAPS
    from ffcore.runs.plan import study_swaps
    from ffcore.runs.profiles import get_profile

    for name in ("synthetic", "synthetic_seeds"):
        assert set(PLACEBO_SWAPS) <= set(study_swaps(get_profile(name))), name
