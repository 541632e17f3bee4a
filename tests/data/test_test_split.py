"""The held-out test split: large enough for its intervals, evaluated at native size, and drawn from
another seed in a rerun with disjoint training seeds, beside the same training images."""

from __future__ import annotations

from dataclasses import replace

from ffcore.data.synth import TINY_SYNTH, ensure_synthetic_dataset
from ffcore.runs.context import default_data_root
from ffcore.runs.profiles import get_profile


def test_the_reference_profiles_evaluate_at_least_500_test_images_at_native_size():
    for name in ("synthetic", "synthetic_long", "synthetic_seeds"):
        profile = get_profile(name)
        assert profile.synthetic_test_images >= 500 and profile.eval_scale == "origin", name


def test_a_rerun_with_a_seed_offset_draws_its_own_test_split_in_its_own_folder():
    profile = get_profile("synthetic")
    rerun = profile.with_overrides(fields={"seed_offset": 100})
    assert profile.test_split_seed is None and rerun.test_split_seed == profile.seed + 100
    assert default_data_root(rerun) != default_data_root(profile)
    pinned = profile.with_overrides(fields={"seed_offset": 100, "synthetic_test_seed": profile.seed})
    assert pinned.test_split_seed is None and default_data_root(pinned) == default_data_root(profile)


def test_another_test_seed_changes_the_test_images_only(tmp_path):
    config = replace(TINY_SYNTH, test_images=2)
    same, other = (ensure_synthetic_dataset(tmp_path / name, cfg) for name, cfg in
                   (("same", config), ("other", replace(config, test_seed=7))))
    for path in ("train/label.txt", "wider_face_split/wider_face_val_bbx_gt.txt"):
        assert (same / path).read_bytes() == (other / path).read_bytes(), path
    test_gt = "heldout_test/wider_face_split/wider_face_val_bbx_gt.txt"
    assert (same / test_gt).read_bytes() != (other / test_gt).read_bytes()
    assert config.fingerprint() != replace(config, test_seed=7).fingerprint()
    # the dataset's own seed named as the test seed is another config, but the same images: drawn alike
    pinned = ensure_synthetic_dataset(tmp_path / "pinned", replace(config, test_seed=config.seed))
    assert (pinned / test_gt).read_bytes() == (same / test_gt).read_bytes()
