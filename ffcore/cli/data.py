"""`ffcore synth`: write (or confirm) the synthetic WIDER-format dataset."""

from __future__ import annotations


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic WIDER-format dataset",
                       description="Generate a deterministic synthetic face dataset (procedurally drawn faces, "
                                   "not WIDER FACE) in the real WIDER FACE layouts: RetinaFace train/label.txt, "
                                   "wider_face_split lists and the evaluation .mat files. Does nothing when the "
                                   "folder already holds the dataset of the same configuration.")
    p.add_argument("--out", default=None, help="output root (default data/synthetic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=None, help="number of training images (default 400)")
    p.add_argument("--val-images", type=int, default=None, help="number of validation images (default 100)")
    p.add_argument("--force", action="store_true", help="regenerate even if the same dataset is there")
    p.add_argument("--preview", default=None, help="also save a grid of samples with boxes and landmarks (PNG)")
    p.set_defaults(handler=synth_command)


def synth_command(out: str | None = None, seed: int = 0, train_images: int | None = None,
                  val_images: int | None = None, force: bool = False, preview: str | None = None) -> int:
    """`ffcore synth`: write (or confirm) the synthetic dataset and print its statistics."""
    import dataclasses
    import time

    from ffcore.data.synth import SynthConfig, ensure_synthetic_dataset, read_manifest

    overrides = {"seed": seed}
    if train_images is not None:
        overrides["train_images"] = train_images
    if val_images is not None:
        overrides["val_images"] = val_images
    config = dataclasses.replace(SynthConfig(), **overrides)
    start = time.perf_counter()
    root = ensure_synthetic_dataset(out, config, force=force)
    manifest = read_manifest(root)
    elapsed = time.perf_counter() - start
    print(f"synthetic dataset (not WIDER FACE) at {root}  fingerprint {manifest['fingerprint']}  ({elapsed:.1f} s)")
    for split, stats in manifest["statistics"].items():
        heights = stats["face_height_px"]
        print(f"  {split}: {stats['images']} images, {stats['faces']} faces "
              f"({stats['faces_per_image']['median']:.0f} median per image, max {stats['faces_per_image']['max']}), "
              f"heights px min {heights.get('min', 0):.0f} / median {heights.get('median', 0):.0f} / "
              f"max {heights.get('max', 0):.0f}, landmarks on {stats['faces_with_landmarks']}, "
              f"counted easy/medium/hard {stats['counted']['easy']}/{stats['counted']['medium']}/"
              f"{stats['counted']['hard']}")
    if preview:
        from ffcore.data.synth import preview_grid

        fig = preview_grid(root)
        fig.savefig(preview, dpi=150)
        print(f"preview written to {preview}")
    return 0
