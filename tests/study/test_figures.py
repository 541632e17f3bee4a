"""Study figures drawn from written tables: what they show is what the table says."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest


@pytest.fixture()
def study(tmp_path, monkeypatch):
    from ffcore.study import Study
    from ffcore.runs.profiles import get_profile

    monkeypatch.setattr("ffcore.runs.context.results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr("ffcore.runs.context.figures_dir", lambda: tmp_path / "figures")
    profile = dataclasses.replace(get_profile("smoke"), seeds=(0, 1))
    return Study(profile=profile, data_root=tmp_path / "data", device="cpu")


def _row(run, vs, seed, d, low, high, verdict):
    row = {"run": run, "vs": vs, "seed": seed}
    for s in ("easy", "medium", "hard"):
        row.update({f"d{s} AP pts": d, f"d{s} CI low": low, f"d{s} CI high": high, f"{s} verdict": verdict})
    return row


def test_differences_figure_shows_every_verdict_and_the_pooled_row(study):
    import matplotlib.pyplot as plt

    from ffcore.study.ap_figures import VERDICT_COLOURS, differences_figure

    pooled = {**_row("pooled", "", -1, 0.75, -0.25, 1.9, "inside the noise"),
              "comparison": "featherface_v2_distilled vs featherface_v2", "seeds": "2 vs 2, paired by seed"}
    table = pd.DataFrame([
        _row("featherface_v2_distilled", "featherface_v2", 0, 2.0, 1.0, 3.0, "higher"),
        _row("featherface_v2_distilled_seed1", "featherface_v2_seed1", 1, -0.5, -1.5, 0.5, "one seed: not established"),
        pooled,
        _row("featherface_v2_distilled_eca_cbam_widerface", "featherface_v2", 0, -2.0, -3.0, -1.0, "lower"),
    ])
    study.tables_dir.mkdir(parents=True)
    table.to_csv(study.tables_dir / "distillation_comparison.csv", index=False)
    fig = differences_figure(study, "distillation_comparison")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["higher", "lower", "inside the noise", "one seed: not established",
                      "pooled over seeds (two-stage t interval)"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 4 and labels[2].startswith("pooled over seeds (2 vs 2, paired by seed):")
    assert labels[0] == "FeatherFace V2 distilled from FeatherFace V1\nvs FeatherFace V2"
    # each row's interval is drawn in its verdict's colour; the pooled row is a diamond with its own interval
    hard = fig.axes[2]
    marks = [line for line in hard.lines if line.get_marker() in ("o", "D")]
    assert [line.get_color() for line in marks] == [VERDICT_COLOURS[v] for v in
                                                    ("higher", "one seed: not established", "inside the noise",
                                                     "lower")]
    assert [line.get_marker() for line in marks] == ["o", "o", "D", "o"]
    pooled_bar = hard.collections[2].get_segments()[0]
    assert pooled_bar[0][0] == pytest.approx(-0.25) and pooled_bar[1][0] == pytest.approx(1.9)
    assert (study.figures_dir / "distillation_comparison_intervals.png").is_file()
    plt.close(fig)
