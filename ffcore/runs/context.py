"""The study context: one profile, one dataset, one device, and where every artifact goes.

Layout for profile `<p>`::

    results/<p>/tables/          CSV + LaTeX + sidecar JSON of every table
    results/<p>/checkpoints/<model>/best.pt   trained models (reused unless force=True)
    results/<p>/predictions/<model>/          WIDER-format prediction files
    results/<p>/cache/                        AP results keyed by checkpoint hash and code versions
    results/<p>/notebooks/                    executed notebooks (run_all.py)
    results/<p>/summary.md                    every artifact with its headline number
    thesis_figures/<p>/                       PDF + PNG + sidecar JSON of every figure
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ffcore.paths import default_synthetic_root, default_widerface_root, figures_dir, results_dir
from ffcore.report.provenance import Provenance
from ffcore.runs.datasets import DatasetMissingError, prepare_dataset  # noqa: F401  (re-exported)
from ffcore.runs.profiles import RunProfile, get_profile
from ffcore.report.display import CAPTION, configure_display


@dataclass
class Study:
    profile: RunProfile
    data_root: Path
    device: str
    force: bool = False
    # checkpoints used by this study so far: model name -> sha256 prefix (goes into provenance)
    used_checkpoints: dict[str, str] = field(default_factory=dict)
    # model name -> the commit its checkpoint was trained at (the payload's "git_commit"), filled by
    # whoever loads the checkpoint; provenance records it beside the checkpoint's hash
    checkpoint_commits: dict[str, str] = field(default_factory=dict)

    # --- locations -------------------------------------------------------------------
    @property
    def results_root(self) -> Path:
        return results_dir() / self.profile.name

    @property
    def tables_dir(self) -> Path:
        return self.results_root / "tables"

    @property
    def figures_dir(self) -> Path:
        return figures_dir() / self.profile.name

    @property
    def checkpoints_dir(self) -> Path:
        return self.results_root / "checkpoints"

    @property
    def predictions_dir(self) -> Path:
        return self.results_root / "predictions"

    @property
    def cache_dir(self) -> Path:
        return self.results_root / "cache"

    def run_dir(self, run_name: str) -> Path:
        return self.checkpoints_dir / run_name

    def checkpoint_path(self, run_name: str) -> Path:
        return self.run_dir(run_name) / "best.pt"

    @property
    def dataset(self) -> str:
        """The profile's dataset, or "synthetic" when the data root is a generated tree (it carries
        the generator's marker), wherever it was copied."""
        from ffcore.report.provenance import dataset_of

        return dataset_of(self.data_root, self.profile.dataset)

    # --- provenance ------------------------------------------------------------------
    def provenance(self, checkpoints: Iterable[str] | Mapping[str, str] = (), **notes) -> Provenance:
        """A provenance record naming the checkpoints (by run name) the artifact was computed from."""
        if isinstance(checkpoints, Mapping):
            hashes = dict(checkpoints)
        else:
            hashes = {name: self.used_checkpoints.get(name, "untrained") for name in checkpoints}
        base_notes = {"device": self.device, "image_size": self.profile.image_size,
                      "epochs": self.profile.epochs, "data_root": _relative(self.data_root)}
        return Provenance(profile=self.profile.name, dataset=self.dataset, checkpoints=hashes,
                          notes={**base_notes, **notes}, seeds=list(self.profile.seeds),
                          preset=self._presets() if hashes else None, data_root=str(self.data_root),
                          checkpoint_commits={k: v for k, v in self.checkpoint_commits.items() if k in hashes})

    def _presets(self) -> dict:
        """The profile's training recipes by role, with the preset's own values; the profile's changes to
        them (epochs, image size, ...) are in the notes. A role using the same preset as "train" names it only."""
        from dataclasses import asdict

        from ffcore.engine.config import get_preset

        train, student = self.profile.train_preset, self.profile.student_preset
        return {"train": {"name": train, **asdict(get_preset(train))},
                "student": {"name": student} if student == train else {"name": student, **asdict(get_preset(student))}}

    def _provenance_for(self, data_free: bool, checkpoints, notes) -> Provenance:
        from ffcore.report.provenance import NO_DATA

        if data_free:   # parameters, FLOPs, shapes: no dataset and no training behind the numbers
            return Provenance(profile=self.profile.name, dataset=NO_DATA, notes=dict(notes))
        return self.provenance(checkpoints, **notes)

    def save_table(self, table, name: str, caption: str, headline: str | None = None,
                   checkpoints: Iterable[str] | Mapping[str, str] = (), data_free: bool = False,
                   columns: list[str] | None = None, **notes):
        """`columns`: the CSV columns the .tex prints, in order (None: `ffcore.report.tex`'s rule); the CSV keeps all."""
        from ffcore.report.provenance import write_table

        write_table(table, self.tables_dir, name, self._provenance_for(data_free, checkpoints, notes),
                    caption=caption, headline=headline, columns=columns)
        table.attrs[CAPTION] = caption   # shown above the table in a notebook (ffcore.report.display)
        return table

    def save_figure(self, fig, name: str, headline: str | None = None,
                    checkpoints: Iterable[str] | Mapping[str, str] = (), data_free: bool = False, **notes):
        from ffcore.report.provenance import write_figure

        write_figure(fig, self.figures_dir, name, self._provenance_for(data_free, checkpoints, notes),
                     headline=headline)
        return fig

    def __repr__(self) -> str:
        p = self.profile
        return (f"Study(profile={p.name!r}: {p.description}; dataset={p.dataset} at {_relative(self.data_root)}; "
                f"device={self.device}; epochs={p.epochs} (V2 alone and distilled {p.student_epochs}); "
                f"image_size={p.image_size}; force={self.force})")


def _relative(path: Path) -> str:
    from ffcore.paths import REPO_ROOT

    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def default_data_root(profile: RunProfile) -> Path:
    """Where the profile's dataset lives unless the caller names another folder."""
    if profile.is_synthetic:
        # one folder per profile: the smoke and synthetic datasets differ in size; a test split drawn
        # from another seed (a rerun's) is another dataset, beside the first rather than over it
        test_seed = profile.test_split_seed
        return default_synthetic_root() / (profile.name + ("" if test_seed is None else f"_test_seed{test_seed}"))
    return default_widerface_root()


def open_study(profile: str | RunProfile = "smoke", data_root: str | Path | None = None,
               device: str | None = None, epochs: int | None = None, image_size: int | None = None,
               force: bool = False, prepare_data: bool = True, overrides: dict | None = None) -> Study:
    """The context every study function takes. Generates the synthetic dataset on first use
    (synthetic profiles) or checks the WIDER FACE layout (`full`), failing with a message
    that says where the data should be. `overrides`: other profile fields to replace."""
    run_profile = get_profile(profile) if isinstance(profile, str) else profile
    run_profile = run_profile.with_overrides(epochs=epochs, image_size=image_size, fields=overrides)
    root = Path(data_root).expanduser().resolve() if data_root else default_data_root(run_profile)
    study = Study(profile=run_profile, data_root=root, device=device or run_profile.device, force=bool(force))
    if prepare_data:
        prepare_dataset(run_profile, root)
    configure_display()
    return study
