"""Study figures drawn from written tables: what they show is what the table says."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest


@pytest.fixture()
def study(tmp_path, monkeypatch):
    from ffcore.study import Study
    from ffcore.study.run_profiles import get_profile

    monkeypatch.setattr("ffcore.study.context.results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr("ffcore.study.context.figures_dir", lambda: tmp_path / "figures")
    profile = dataclasses.replace(get_profile("smoke"), seeds=(0, 1))
    return Study(profile=profile, data_root=tmp_path / "data", device="cpu")


def _row(run, vs, seed, d, low, high, verdict):
    row = {"run": run, "vs": vs, "seed": seed}
    for s in ("easy", "medium", "hard"):
        row.update({f"d{s} AP pts": d, f"d{s} CI low": low, f"d{s} CI high": high, f"{s} verdict": verdict})
    return row


def test_differences_figure_shows_every_verdict_and_the_mean_over_seeds(study):
    import matplotlib.pyplot as plt

    from ffcore.study.evaluation import VERDICT_COLOURS, differences_figure

    table = pd.DataFrame([
        _row("featherface_v2_distilled", "featherface_v2", 0, 2.0, 1.0, 3.0, "higher"),
        _row("featherface_v2_distilled_seed1", "featherface_v2_seed1", 1, -0.5, -1.5, 0.5, "inside the noise"),
        _row("featherface_v2_distilled_eca_cbam_widerface", "featherface_v2", 0, -2.0, -3.0, -1.0, "lower"),
        _row("mean ± sd over 2 seeds", "", -1, 0.75, float("nan"), float("nan"), "sd 1.77; alone 1 ± 1"),
    ])
    study.tables_dir.mkdir(parents=True)
    table.to_csv(study.tables_dir / "distillation_comparison.csv", index=False)
    fig = differences_figure(study, "distillation_comparison")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["higher", "lower", "inside the noise", "mean over seeds ± 1 sd"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 4 and labels[-1] == "mean over 2 seeds (± 1 sd)"
    assert labels[0] == "FeatherFace V2 distilled from FeatherFace V1\nvs FeatherFace V2"
    # each row's interval is drawn in its verdict's colour, the mean's whisker is ± 1 sd of the seeds' rows
    hard = fig.axes[2]
    colours = [tuple(line.get_color()) if not isinstance(line.get_color(), str) else line.get_color()
               for line in hard.lines if line.get_marker() in ("o", "D")]
    assert colours[:3] == [VERDICT_COLOURS["higher"], VERDICT_COLOURS["inside the noise"], VERDICT_COLOURS["lower"]]
    mean_bar = hard.collections[-1].get_segments()[0]
    sd = pd.Series([2.0, -0.5]).std(ddof=1)
    assert mean_bar[0][0] == pytest.approx(0.75 - sd) and mean_bar[1][0] == pytest.approx(0.75 + sd)
    assert (study.figures_dir / "distillation_comparison_intervals.png").is_file()
    plt.close(fig)
