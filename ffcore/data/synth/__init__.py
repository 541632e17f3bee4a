"""A synthetic face dataset written in the real WIDER FACE layouts (SYNTHETIC DATA, not WIDER FACE).

It lets every part of the project (training, evaluation, notebooks, tests) run on a
machine without the real images. Faces are drawn procedurally with OpenCV — head
ellipse, hair, ears, eyes with irises, eyebrows, nose, lips — on cluttered backgrounds
with face-like distractors (featureless skin ellipses, round objects with two dots,
"mouth" ellipses without eyes), so the task is not trivial. Variety: face heights from
~8 px to ~300 px, roll and yaw, six skin tones, directional shading and global lighting,
per-face and whole-image blur, occluders (hands, masks, sunglasses, objects), crowds
where nearer rows hide the chins of farther ones, bodies, image noise and JPEG artefacts.

Five landmarks per face: eye on the image's left, eye on the image's right, nose tip,
left and right mouth corners (before roll, in image terms, as in RetinaFace's label.txt).

Boxes are the axis-aligned bounds of the (rolled, yaw-narrowed) head ellipse, in integer
pixels. Each face's *visible fraction* is measured on an id map: the pixels of its head
ellipse that nothing drawn later (another face, body, hair, occluder) covered.

Written layout under the root (default data/synthetic):
    WIDER_train/images/<event>/<name>.jpg, train/label.txt (RetinaFace, with landmarks),
    wider_face_split/wider_face_{train,val}_bbx_gt.txt, WIDER_val/images/<event>/<name>.jpg,
    ground_truth/wider_face_val.mat, ground_truth/wider_{easy,medium,hard}_val.mat,
    heldout_test/ (when `SynthConfig.test_images` > 0): a held-out test split laid out as an
    evaluation tree of its own (WIDER_val/images, wider_face_split/wider_face_val_bbx_gt.txt,
    ground_truth/*.mat: the files the evaluator reads, under the names it reads),
    synth_manifest.json (config, fingerprint, statistics).

Everything is deterministic from `SynthConfig.seed` (each image draws from its own
generator seeded by (seed, split, index), so the test split's images come from a stream of
their own and adding it changes no training or validation image).

The package, by concern:
- `ffcore.data.synth.config`: `SynthConfig` (what is drawn, the difficulty thresholds), its fingerprint;
- `ffcore.data.synth.render`: one scene drawn with OpenCV, each face measured (`render_image`);
- `ffcore.data.synth.difficulty`: which faces count in easy / medium / hard, which carry landmarks;
- `ffcore.data.synth.writer`: the WIDER FACE files of a dataset, generated once per configuration;
- `ffcore.data.synth.preview`: a grid of samples with their boxes and landmarks.
"""

from ffcore.data.synth.config import EVENTS, GENERATOR_VERSION, MANIFEST, TINY_SYNTH, WIDER_SIZED_SYNTH, SynthConfig
from ffcore.data.synth.difficulty import difficulty_masks, has_landmarks
from ffcore.data.synth.preview import preview_grid
from ffcore.data.synth.render import FaceSpec, RenderedImage, render_image
from ffcore.data.synth.writer import (OWNED_ENTRIES, ensure_synthetic_dataset, generate_synthetic_dataset,
                                      read_manifest)

__all__ = ["EVENTS", "GENERATOR_VERSION", "MANIFEST", "OWNED_ENTRIES", "TINY_SYNTH", "WIDER_SIZED_SYNTH", "FaceSpec", "RenderedImage",
           "SynthConfig", "difficulty_masks", "ensure_synthetic_dataset", "generate_synthetic_dataset",
           "has_landmarks", "preview_grid", "read_manifest", "render_image"]
