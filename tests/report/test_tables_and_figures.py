"""Tables and figures written through ffcore.report.provenance carry their sidecar and their data label."""

import json

import pandas as pd


def test_tables_and_figures_carry_provenance(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ffcore.report.provenance import Provenance, write_figure, write_table

    provenance = Provenance(profile="smoke", dataset="synthetic", checkpoints={"v1": "abc123"})
    paths = write_table(pd.DataFrame({"model": ["a_b"], "params": [1.5]}), tmp_path, "t", provenance,
                        caption="Parameters", headline="a: 1.5")
    assert "SYNTHETIC DATA" in paths["csv"].read_text().splitlines()[0]
    # the underscore escaped, with a break point after it so long names wrap in narrow columns
    assert "SYNTHETIC DATA" in paths["tex"].read_text() and "a\\_\\allowbreak{}b" in paths["tex"].read_text()
    sidecar = json.loads(paths["json"].read_text())
    assert sidecar["dataset"] == "synthetic" and sidecar["checkpoints"] == {"v1": "abc123"}
    assert {"commit", "dirty"} <= set(sidecar["git"]) and sidecar["headline"] == "a: 1.5"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig_paths = write_figure(fig, tmp_path, "f", provenance)
    assert fig_paths["pdf"].stat().st_size > 0 and fig_paths["png"].stat().st_size > 0
    assert any("SYNTHETIC" in text.get_text() for text in fig.texts)
    plt.close(fig)


def test_each_kind_of_data_has_its_own_label():
    from ffcore.report.provenance import NO_DATA, REAL_PHOTOS, SYNTHETIC, WIDERFACE, Provenance

    labels = {kind: Provenance(profile="synthetic", dataset=kind).label() for kind in (SYNTHETIC, WIDERFACE, REAL_PHOTOS)}
    assert labels[SYNTHETIC].startswith("SYNTHETIC DATA") and labels[WIDERFACE].startswith("WIDER FACE")
    assert labels[REAL_PHOTOS].startswith("REAL PHOTOS") and "not a WIDER FACE evaluation" in labels[REAL_PHOTOS]
    assert Provenance(profile="smoke", dataset=NO_DATA).label().startswith("no data")
