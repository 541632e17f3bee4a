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

Difficulty rule (in WIDER's spirit: easy ⊂ medium ⊂ hard; faces not in a setting are
"ignored" by the evaluator, neither true nor false positives), with h = box height in pixels
and v = visible fraction:
- hard:   h >= 8 and v >= 0.4 (at most 60 % hidden);
- medium: h >= 16 and v >= 0.6;
- easy:   h >= 40, v >= 0.85 and no heavy blur.
Faces with v < 0.25 are marked `invalid`. Landmarks are written (label 1) for faces with
h >= 12 and v >= 0.5, otherwise -1 (as WIDER's tiny faces have none).
Attributes in the bbx_gt lists and .mat files: blur 0/1/2 (none, normal, heavy), expression
(1 = wide open mouth), illumination (1 = extreme), invalid, occlusion 0/1/2 (< 5 %,
<= 30 %, > 30 % hidden), pose (1 = |yaw| > 0.6 or |roll| > 30 degrees).

Written layout under the root (default data/synthetic):
    WIDER_train/images/<event>/<name>.jpg, train/label.txt (RetinaFace, with landmarks),
    wider_face_split/wider_face_{train,val}_bbx_gt.txt, WIDER_val/images/<event>/<name>.jpg,
    ground_truth/wider_face_val.mat, ground_truth/wider_{easy,medium,hard}_val.mat,
    synth_manifest.json (config, fingerprint, statistics).

Everything is deterministic from `SynthConfig.seed` (each image draws from its own
generator seeded by (seed, split, index)).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ffcore.data.annotations import ImageAnnotation, read_retinaface_labels, write_retinaface_labels, write_wider_bbx_gt
from ffcore.data.matfiles import SETTINGS, write_ground_truth
from ffcore.provenance import SYNTHETIC_MARKER

log = logging.getLogger("ffcore.data")

GENERATOR_VERSION = 2
MANIFEST = SYNTHETIC_MARKER   # provenance reads it: a copied tree stays labelled synthetic

# event folder name -> scene kind
EVENTS = (("0--Portrait", "portrait"), ("1--Family", "group"), ("2--Meeting", "group"), ("3--Parade", "crowd"),
          ("4--Street", "street"), ("5--Stadium", "stadium"), ("6--Night", "night"))

SKIN_TONES_BGR = ((189, 215, 250), (160, 195, 235), (120, 170, 225), (90, 135, 190), (60, 95, 145), (40, 65, 100))
HAIR_BGR = ((20, 20, 25), (30, 45, 70), (40, 80, 130), (90, 140, 190), (160, 160, 165), (15, 30, 50))
IRIS_BGR = ((30, 40, 60), (120, 90, 40), (60, 110, 70), (20, 20, 20))


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    train_images: int = 400
    val_images: int = 100
    min_long_side: int = 320
    max_long_side: int = 640
    min_face: float = 8.0             # smallest face height drawn, pixels
    max_face: float = 300.0           # largest face height drawn, pixels
    occlusion_probability: float = 0.2
    blur_probability: float = 0.15
    distractors: tuple[int, int] = (3, 10)
    clutter: tuple[int, int] = (15, 45)
    jpeg_quality: tuple[int, int] = (70, 95)
    events: tuple[tuple[str, str], ...] = EVENTS
    # difficulty rule (see the module docstring)
    hard_min_height: float = 8.0
    hard_min_visible: float = 0.4
    medium_min_height: float = 16.0
    medium_min_visible: float = 0.6
    easy_min_height: float = 40.0
    easy_min_visible: float = 0.85
    invalid_max_visible: float = 0.25
    hidden_max_visible: float = 0.1      # faces less visible than this are not annotated at all
    landmark_min_height: float = 12.0
    landmark_min_visible: float = 0.5

    def __post_init__(self):
        if self.train_images < 1 or self.val_images < 1:
            raise ValueError("train_images and val_images must be >= 1")
        if not 32 <= self.min_long_side <= self.max_long_side:
            raise ValueError(f"need 32 <= min_long_side <= max_long_side, got {self.min_long_side}, {self.max_long_side}")
        if not 4 <= self.min_face < self.max_face:
            raise ValueError(f"need 4 <= min_face < max_face, got {self.min_face}, {self.max_face}")

    def fingerprint(self) -> str:
        payload = json.dumps({"config": dataclasses.asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


TINY_SYNTH = SynthConfig(train_images=6, val_images=4, min_long_side=160, max_long_side=256)


# ----------------------------------------------------------------------------------------
# geometry of one face
# ----------------------------------------------------------------------------------------
@dataclass
class FaceSpec:
    cx: float
    cy: float
    height: float                     # head ellipse height (= box height before roll)
    roll: float                       # radians
    yaw: float                        # -1 .. 1
    skin: tuple
    hair: tuple
    iris: tuple
    shirt: tuple
    shading: tuple[float, float, float]   # (strength, direction x, direction y)
    blur_sigma_rel: float             # Gaussian sigma as a fraction of the face height
    mouth_open: float                 # 0 closed .. 1 wide open
    occluder: str | None
    has_hair: bool
    has_body: bool

    @property
    def semi_axes(self) -> tuple[float, float]:
        return 0.39 * self.height * (1 - 0.18 * abs(self.yaw)), 0.5 * self.height

    def to_image(self, u, v) -> np.ndarray:
        """Face-frame points (units of face height, u right, v down) -> image pixels [k, 2]."""
        c, s = math.cos(self.roll), math.sin(self.roll)
        squeeze, shift = 1 - 0.3 * abs(self.yaw), 0.16 * self.yaw
        points = []
        for pu, pv in zip(u, v):
            # yaw: features slide towards the turned side and the face narrows
            pu = pu * squeeze + shift * math.cos(2 * pu)
            points.append((self.cx + self.height * (c * pu - s * pv), self.cy + self.height * (s * pu + c * pv)))
        return np.array(points, dtype=np.float64)

    def box(self) -> np.ndarray:
        a, b = self.semi_axes
        c, s = math.cos(self.roll), math.sin(self.roll)
        half_w = math.sqrt((a * c) ** 2 + (b * s) ** 2)
        half_h = math.sqrt((a * s) ** 2 + (b * c) ** 2)
        return np.array([self.cx - half_w, self.cy - half_h, self.cx + half_w, self.cy + half_h])

    def landmarks(self) -> np.ndarray:
        """[5, 2]: eye (image left), eye (image right), nose tip, mouth left, mouth right."""
        u = np.array([-0.17, 0.17, 0.0, -0.13, 0.13])
        v = np.array([-0.08, -0.08, 0.09, 0.24, 0.24])
        return self.to_image(u, v)


_SHIFT = 4                  # OpenCV fixed-point bits: sub-pixel drawing for small faces
_ONE = 1 << _SHIFT


def _pt(xy) -> tuple[int, int]:
    return int(round(xy[0] * _ONE)), int(round(xy[1] * _ONE))


def _ellipse(canvas, centre, axes, angle_deg, colour, thickness=-1):
    import cv2

    axes = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
    cv2.ellipse(canvas, _pt(centre), axes, angle_deg, 0, 360, colour, thickness, cv2.LINE_AA if canvas.ndim == 3 else
                cv2.LINE_8, _SHIFT)


def _poly(canvas, points, colour):
    import cv2

    pts = np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA if canvas.ndim == 3 else cv2.LINE_8, _SHIFT)


def _line(canvas, p, q, colour, thickness):
    import cv2

    cv2.line(canvas, _pt(p), _pt(q), colour, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _scale(colour, factor) -> tuple:
    return tuple(min(255.0, max(0.0, float(c) * factor)) for c in colour)


# ----------------------------------------------------------------------------------------
# drawing
# ----------------------------------------------------------------------------------------
def _draw_body(canvas, idmap, face: FaceSpec) -> None:
    h = face.height
    centre = face.to_image([0.0], [1.15])[0]
    axes = (0.95 * h, 0.6 * h)
    angle = math.degrees(face.roll) * 0.5
    _ellipse(canvas, centre, axes, angle, face.shirt)
    _ellipse(idmap, centre, axes, angle, 0)
    neck = face.to_image([-0.12, 0.12, 0.12, -0.12], [0.3, 0.3, 0.7, 0.7])
    _poly(canvas, neck, _scale(face.skin, 0.8))
    _poly(idmap, neck, 0)


def _draw_face(canvas, idmap, face: FaceSpec, face_id: int, rng: np.random.Generator) -> int:
    """Draw one head; returns the number of id-map pixels it covers (its full in-image area)."""
    import cv2

    h = face.height
    a, b = face.semi_axes
    angle = math.degrees(face.roll)
    centre = (face.cx, face.cy)
    if face.has_body:
        _draw_body(canvas, idmap, face)
    if face.has_hair:
        hair_centre = face.to_image([0.0], [-0.07])[0]
        _ellipse(canvas, hair_centre, (a * 1.1, b * 0.98), angle, face.hair)
        _ellipse(idmap, hair_centre, (a * 1.1, b * 0.98), angle, 0)
    for side in (-1, 1):                                       # ears; the far one hides behind the head
        if side * face.yaw < 0.5:
            ear = face.to_image([side * 0.4], [0.02])[0]
            _ellipse(canvas, ear, (0.06 * h, 0.11 * h), angle, _scale(face.skin, 0.88))
    _ellipse(canvas, centre, (a, b), angle, face.skin)
    _ellipse(idmap, centre, (a, b), angle, face_id)

    # features
    eyes = face.to_image([-0.17, 0.17], [-0.08, -0.08])
    for index, eye in enumerate(eyes):
        foreshortening = 1 - 0.5 * max(0.0, face.yaw * (1 if index == 1 else -1))
        _ellipse(canvas, eye, (0.075 * h * foreshortening, 0.036 * h), angle, (235, 240, 240))
        iris = eye + np.array([0.02 * h * face.yaw, 0.0])
        _ellipse(canvas, iris, (0.03 * h * foreshortening, 0.03 * h), angle, face.iris)
        _ellipse(canvas, iris, (0.012 * h, 0.012 * h), angle, (10, 10, 10))
    for side in (-1, 1):
        brow = face.to_image([side * 0.09, side * 0.25], [-0.17, -0.165])
        _line(canvas, brow[0], brow[1], _scale(face.hair, 0.9), 0.03 * h)
    nose = face.to_image([0.0, 0.015, 0.0], [-0.05, 0.06, 0.09])
    _line(canvas, nose[0], nose[1], _scale(face.skin, 0.75), 0.025 * h)
    for side in (-1, 1):
        nostril = face.to_image([side * 0.035], [0.095])[0]
        _ellipse(canvas, nostril, (0.018 * h, 0.012 * h), angle, _scale(face.skin, 0.5))
    lips = _scale((face.skin[0] * 0.6, face.skin[1] * 0.55, min(255, face.skin[2] * 0.95 + 20)), 1.0)
    mouth = face.to_image([0.0], [0.24])[0]
    _ellipse(canvas, mouth, (0.13 * h * (1 - 0.3 * abs(face.yaw)), (0.03 + 0.05 * face.mouth_open) * h), angle, lips)
    if face.mouth_open > 0.3:
        _ellipse(canvas, mouth, (0.09 * h * (1 - 0.3 * abs(face.yaw)), 0.04 * face.mouth_open * h), angle, (40, 30, 60))
    else:
        corners = face.to_image([-0.13, 0.13], [0.24, 0.24])
        _line(canvas, corners[0], corners[1], _scale(lips, 0.6), 0.012 * h)

    # shading and blur, limited to this head so neighbours are untouched
    x1, y1, x2, y2 = face.box()
    pad = max(2, int(0.1 * h))
    H, W = idmap.shape
    left, top = max(0, int(x1) - pad), max(0, int(y1) - pad)
    right, bottom = min(W, int(math.ceil(x2)) + pad), min(H, int(math.ceil(y2)) + pad)
    if right <= left or bottom <= top:
        return 0
    roi_ids = idmap[top:bottom, left:right]
    mask = roi_ids == face_id
    strength, dx, dy = face.shading
    roi = canvas[top:bottom, left:right].astype(np.float32)
    if strength:
        ys, xs = np.mgrid[top:bottom, left:right]
        ramp = 1 + strength * ((xs - face.cx) * dx + (ys - face.cy) * dy) / h
        roi[mask] *= np.clip(ramp, 0.2, 2.0)[mask][:, None]
    if face.blur_sigma_rel > 0:
        sigma = max(0.5, face.blur_sigma_rel * h)
        blurred = cv2.GaussianBlur(roi, (0, 0), sigma)
        soft = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        roi[soft] = blurred[soft]
    canvas[top:bottom, left:right] = np.clip(roi, 0, 255).astype(np.uint8)
    return int(mask.sum())


def _draw_occluder(canvas, idmap, face: FaceSpec, rng: np.random.Generator) -> None:
    h = face.height
    kind = face.occluder
    if kind == "mask":
        points = face.to_image([-0.3, 0.3, 0.28, 0.0, -0.28], [0.04, 0.04, 0.33, 0.45, 0.33])
        colour = tuple(float(c) for c in rng.choice([(235, 235, 235), (210, 180, 120), (40, 40, 40)]))
        _poly(canvas, points, colour)
        _poly(idmap, points, 0)
    elif kind == "sunglasses":
        for u in (-0.17, 0.17):
            eye = face.to_image([u], [-0.08])[0]
            _ellipse(canvas, eye, (0.11 * h, 0.07 * h), math.degrees(face.roll), (20, 20, 20))
            _ellipse(idmap, eye, (0.11 * h, 0.07 * h), math.degrees(face.roll), 0)
    elif kind == "hand":
        side = rng.choice([-1, 1])
        centre = face.to_image([side * rng.uniform(0.1, 0.35)], [rng.uniform(0.0, 0.3)])[0]
        axes = (rng.uniform(0.15, 0.25) * h, rng.uniform(0.2, 0.35) * h)
        angle = rng.uniform(0, 180)
        _ellipse(canvas, centre, axes, angle, _scale(face.skin, rng.uniform(0.85, 1.1)))
        _ellipse(idmap, centre, axes, angle, 0)
    else:                                           # an object in front: a sign, a cup, a shoulder
        x1, y1, x2, y2 = face.box()
        w = (x2 - x1) * rng.uniform(0.3, 0.9)
        hh = (y2 - y1) * rng.uniform(0.3, 0.8)
        ox = rng.choice([x1 - 0.3 * w, x2 - 0.7 * w])
        oy = rng.uniform(y1, y2 - 0.5 * hh)
        points = np.array([[ox, oy], [ox + w, oy], [ox + w, oy + hh], [ox, oy + hh]])
        colour = tuple(float(c) for c in rng.integers(0, 256, 3))
        _poly(canvas, points, colour)
        _poly(idmap, points, 0)


def _background(rng: np.random.Generator, height: int, width: int, kind: str, config: SynthConfig) -> np.ndarray:
    import cv2

    # low-frequency colour field
    grid = rng.uniform(0, 255, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    grid = 0.55 * grid + 0.45 * grid.mean(axis=2, keepdims=True)      # real scenes are rarely saturated
    canvas = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    # buildings / windows / furniture blocks
    for _ in range(rng.integers(*config.clutter)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        choice = rng.integers(5)
        x, y = int(rng.integers(width)), int(rng.integers(height))
        size = int(rng.integers(4, max(6, min(width, height) // 3)))
        if choice == 0:
            cv2.rectangle(canvas, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2.5))), colour, -1)
        elif choice == 1:
            cv2.line(canvas, (x, y), (int(rng.integers(width)), int(rng.integers(height))), colour,
                     int(rng.integers(1, 6)), cv2.LINE_AA)
        elif choice == 2:
            cv2.circle(canvas, (x, y), size // 2, colour, int(rng.choice([-1, 2])), cv2.LINE_AA)
        elif choice == 3:                                       # text-like strokes
            cv2.putText(canvas, "".join(rng.choice(list("ABCDEFGHKMNPRSTUXYZ0123456789"), 4)), (x, y),
                        cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.3, 1.5), colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            pts = rng.integers(0, [width, height], (int(rng.integers(3, 6)), 2)).astype(np.int32)
            cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA)
    if kind in ("crowd", "stadium"):                            # stands / rows of seats behind the people
        for row in range(0, height, int(rng.integers(8, 24))):
            cv2.line(canvas, (0, row), (width, row), tuple(int(c) for c in rng.integers(0, 120, 3)), 1)
    # fine texture
    noise = rng.normal(0, rng.uniform(2, 10), (height // 2 + 1, width // 2 + 1, 1)).astype(np.float32)
    noise = cv2.resize(noise, (width, height))[..., None]
    return np.clip(canvas.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _draw_distractors(canvas, rng: np.random.Generator, config: SynthConfig, size_range) -> None:
    """Things that look a bit like faces but are not: they must not be labelled."""
    height, width = canvas.shape[:2]
    for _ in range(rng.integers(*config.distractors)):
        size = float(np.exp(rng.uniform(np.log(size_range[0]), np.log(size_range[1]))))
        centre = (rng.uniform(0, width), rng.uniform(0, height))
        axes = (0.39 * size * rng.uniform(0.7, 1.3), 0.5 * size)
        angle = rng.uniform(-40, 40)
        kind = rng.integers(4)
        skin = SKIN_TONES_BGR[rng.integers(len(SKIN_TONES_BGR))]
        if kind == 0:                                     # featureless skin-coloured head (back of a head, a ball)
            _ellipse(canvas, centre, axes, angle, _scale(skin, rng.uniform(0.8, 1.1)))
        elif kind == 1:                                   # round object with two dots (button, clock)
            colour = tuple(float(c) for c in rng.integers(0, 256, 3))
            _ellipse(canvas, centre, (axes[0], axes[0]), 0, colour)
            for side in (-1, 1):
                _ellipse(canvas, (centre[0] + side * 0.3 * axes[0], centre[1] - 0.2 * axes[0]),
                         (0.1 * axes[0], 0.1 * axes[0]), 0, (20, 20, 20))
        elif kind == 2:                                   # skin ellipse with a "mouth" but no eyes
            _ellipse(canvas, centre, axes, angle, skin)
            _ellipse(canvas, (centre[0], centre[1] + 0.5 * axes[1]), (0.4 * axes[0], 0.1 * axes[1]), angle,
                     (60, 60, 160))
        else:                                             # hair seen from behind
            hair = HAIR_BGR[rng.integers(len(HAIR_BGR))]
            _ellipse(canvas, centre, (axes[0] * 1.1, axes[1]), angle, hair)


def _sample_face(rng: np.random.Generator, cx: float, cy: float, height: float, config: SynthConfig,
                 crowd: bool) -> FaceSpec:
    roll = rng.normal(0, 0.25) if rng.uniform() < 0.8 else rng.uniform(-0.9, 0.9)
    yaw = float(np.clip(rng.normal(0, 0.35), -0.95, 0.95))
    blur = 0.0
    if rng.uniform() < config.blur_probability:
        blur = rng.uniform(0.02, 0.05) if rng.uniform() < 0.6 else rng.uniform(0.05, 0.12)
    occluder = None
    if rng.uniform() < config.occlusion_probability:
        occluder = str(rng.choice(["mask", "sunglasses", "hand", "object"]))
    return FaceSpec(
        cx=cx, cy=cy, height=height, roll=float(roll), yaw=yaw,
        skin=_scale(SKIN_TONES_BGR[rng.integers(len(SKIN_TONES_BGR))], rng.uniform(0.85, 1.12)),
        hair=HAIR_BGR[rng.integers(len(HAIR_BGR))], iris=IRIS_BGR[rng.integers(len(IRIS_BGR))],
        shirt=tuple(float(c) for c in rng.integers(0, 256, 3)),
        shading=(float(rng.uniform(-0.8, 0.8)) if rng.uniform() < 0.6 else 0.0, *_unit(rng)),
        blur_sigma_rel=blur, mouth_open=float(rng.uniform(0, 1) if rng.uniform() < 0.3 else 0.0),
        occluder=occluder, has_hair=rng.uniform() < 0.85, has_body=crowd or rng.uniform() < 0.7)


def _unit(rng) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * np.pi)
    return float(np.cos(angle)), float(np.sin(angle))


def _log_uniform(rng, low, high) -> float:
    low, high = max(low, 1e-3), max(high, low * 1.001)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _place_faces(rng: np.random.Generator, kind: str, width: int, height: int, config: SynthConfig) -> list[FaceSpec]:
    short = min(width, height)
    lo, hi = config.min_face, min(config.max_face, 0.8 * short)
    faces: list[FaceSpec] = []
    if kind in ("crowd", "stadium"):
        # rows from far (top, small) to near (bottom, large); nearer rows drawn later hide chins behind
        far, near = (lo, min(hi, 0.07 * short)) if kind == "stadium" else (lo * 1.3, min(hi, 0.14 * short))
        rows = int(rng.integers(3, 7))
        for r in range(rows):
            t = (r + 0.5) / rows
            size = far + (near - far) * t
            y = height * (0.12 + 0.8 * t)
            x = rng.uniform(0, size)
            while x < width:
                s = size * rng.uniform(0.85, 1.15)
                if rng.uniform() < 0.85:
                    faces.append(_sample_face(rng, x, y + rng.normal(0, 0.15 * s), s, config, crowd=True))
                x += s * rng.uniform(0.9, 1.8)
        cap = 80                                          # keep crowds from dominating the face count
        if len(faces) > cap:
            faces = [faces[i] for i in sorted(rng.choice(len(faces), cap, replace=False))]
        return faces
    count, size_range = {
        "portrait": ((1, 3), (0.22 * short, 0.6 * short)),
        "group": ((3, 11), (0.07 * short, 0.22 * short)),
        "street": ((1, 9), (lo, 0.35 * short)),
        "night": ((1, 7), (lo * 1.5, 0.4 * short)),
    }[kind]
    boxes = []
    for _ in range(int(rng.integers(*count))):
        for _attempt in range(30):
            s = float(np.clip(_log_uniform(rng, *size_range), lo, hi))
            cx = rng.uniform(0.3 * s, width - 0.3 * s)
            cy = rng.uniform(0.4 * s, height - 0.35 * s)
            box = np.array([cx - 0.4 * s, cy - 0.5 * s, cx + 0.4 * s, cy + 0.5 * s])
            if all(_iou(box, other) < 0.15 for other in boxes):
                boxes.append(box)
                faces.append(_sample_face(rng, cx, cy, s, config, crowd=kind == "group"))
                break
    faces.sort(key=lambda f: f.height)                   # small (far) first: near faces may hide them
    return faces


def _iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@dataclass
class RenderedImage:
    image: np.ndarray
    boxes: np.ndarray            # int [n, 4] x1 y1 x2 y2 (clipped to the image)
    landmarks: np.ndarray        # float [n, 10]
    landmark_visible: np.ndarray  # bool [n, 5]
    visible: np.ndarray          # float [n] visible fraction of the head
    attributes: np.ndarray       # int [n, 6] blur expression illumination invalid occlusion pose


def render_image(rng: np.random.Generator, kind: str, config: SynthConfig) -> RenderedImage:
    """Draw one scene of the given kind and measure what each face ended up looking like."""
    import cv2

    long_side = int(rng.integers(config.min_long_side, config.max_long_side + 1))
    aspect = float(rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9, 0.75]))
    width, height = (long_side, int(round(long_side / aspect))) if aspect >= 1 else \
        (int(round(long_side * aspect)), long_side)
    canvas = _background(rng, height, width, kind, config)
    faces = _place_faces(rng, kind, width, height, config)
    sizes = [f.height for f in faces] or [config.min_face * 4]
    largest = max(config.min_face * 2, min(max(sizes), 0.3 * min(width, height)))
    smallest = min(max(config.min_face, min(sizes)), largest / 2)
    _draw_distractors(canvas, rng, config, (smallest, largest))
    idmap = np.zeros((height, width), dtype=np.uint16)
    full_area = np.zeros(len(faces) + 1)
    for index, face in enumerate(faces, start=1):
        full_area[index] = _draw_face(canvas, idmap, face, index, rng)
        if face.occluder is not None:
            _draw_occluder(canvas, idmap, face, rng)

    # whole-image lighting, blur, noise
    light = rng.uniform(0.25, 0.7) if kind == "night" else (rng.uniform(0.6, 1.3) if rng.uniform() < 0.5 else 1.0)
    cast = rng.uniform(0.85, 1.15, 3)
    image = canvas.astype(np.float32) * light * cast
    image_blur = 0.0
    if rng.uniform() < 0.1:
        image_blur = rng.uniform(0.6, 1.8)
        image = cv2.GaussianBlur(image, (0, 0), image_blur)
    image += rng.normal(0, rng.uniform(1, 6 if kind != "night" else 12), image.shape[:2])[..., None]
    image = np.clip(image, 0, 255).astype(np.uint8)

    visible_pixels = np.bincount(idmap.ravel(), minlength=len(faces) + 1)
    boxes, landmarks, point_visible, visible, attributes = [], [], [], [], []
    for index, face in enumerate(faces, start=1):
        if full_area[index] == 0:
            continue
        x1, y1, x2, y2 = face.box()
        box = np.array([max(0, round(x1)), max(0, round(y1)), min(width - 1, round(x2)), min(height - 1, round(y2))])
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        points = face.landmarks()
        inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
        px = np.clip(np.round(points).astype(int), 0, [width - 1, height - 1])
        seen = inside & (idmap[px[:, 1], px[:, 0]] == index)
        fraction = min(1.0, visible_pixels[index] / full_area[index])
        if fraction < config.hidden_max_visible:
            continue                      # hidden behind someone or something: no longer a face in the image
        hidden = 1 - fraction
        effective_blur = face.blur_sigma_rel + image_blur / max(face.height, 1)
        blur_label = 0 if effective_blur < 0.015 else (1 if effective_blur < 0.05 else 2)
        strength = abs(face.shading[0])
        illumination = int(light < 0.45 or strength > 0.6)
        attributes.append([blur_label, int(face.mouth_open > 0.6), illumination,
                           int(fraction < config.invalid_max_visible), 0 if hidden < 0.05 else (1 if hidden <= 0.3 else 2),
                           int(abs(face.yaw) > 0.6 or abs(face.roll) > math.radians(30))])
        boxes.append(box)
        landmarks.append(points.reshape(-1))
        point_visible.append(seen)
        visible.append(fraction)
    n = len(boxes)
    return RenderedImage(image, np.asarray(boxes, dtype=np.int64).reshape(n, 4),
                         np.asarray(landmarks, dtype=np.float32).reshape(n, 10),
                         np.asarray(point_visible, dtype=bool).reshape(n, 5), np.asarray(visible).reshape(n),
                         np.asarray(attributes, dtype=np.int64).reshape(n, 6))


def difficulty_masks(rendered: RenderedImage, config: SynthConfig) -> dict[str, np.ndarray]:
    """Which faces count in easy / medium / hard (the rule in the module docstring)."""
    heights = rendered.boxes[:, 3] - rendered.boxes[:, 1]
    valid = rendered.attributes[:, 3] == 0
    hard = valid & (heights >= config.hard_min_height) & (rendered.visible >= config.hard_min_visible)
    medium = hard & (heights >= config.medium_min_height) & (rendered.visible >= config.medium_min_visible)
    easy = medium & (heights >= config.easy_min_height) & (rendered.visible >= config.easy_min_visible) & \
        (rendered.attributes[:, 0] < 2)
    return {"easy": easy, "medium": medium, "hard": hard}


def _has_landmarks(rendered: RenderedImage, config: SynthConfig) -> np.ndarray:
    heights = rendered.boxes[:, 3] - rendered.boxes[:, 1]
    inside = np.all(rendered.landmarks >= 0, axis=1)
    return (heights >= config.landmark_min_height) & (rendered.visible >= config.landmark_min_visible) & inside


# ----------------------------------------------------------------------------------------
# writing a dataset
# ----------------------------------------------------------------------------------------
_SPLIT_CODE = {"train": 1, "val": 2}


def _image_name(event: str, split: str, index: int) -> str:
    number, label = event.split("--", 1)
    return f"{number}_{label}_synth{split}_{index}"


def _render_split(root: Path, split: str, count: int, config: SynthConfig) -> tuple[list, list, list]:
    import cv2

    images_dir = root / ("WIDER_train" if split == "train" else "WIDER_val") / "images"
    annotations, flags, per_image = [], [], []
    for index in range(count):
        event, kind = config.events[index % len(config.events)]
        rng = np.random.default_rng([config.seed, _SPLIT_CODE[split], index])
        rendered = render_image(rng, kind, config)
        name = _image_name(event, split, index)
        path = images_dir / event / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        if not cv2.imwrite(str(path), rendered.image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"cannot write {path}")
        has = _has_landmarks(rendered, config)
        landmarks = np.where(has[:, None], rendered.landmarks, -1.0)
        annotations.append(ImageAnnotation(f"{event}/{name}.jpg", rendered.boxes.astype(np.float32),
                                           landmarks.astype(np.float32), has, rendered.attributes.astype(np.int32)))
        flags.append((~rendered.landmark_visible).astype(np.float32))
        per_image.append((event, name, rendered))
    return annotations, flags, per_image


def _statistics(per_image: list, config: SynthConfig) -> dict:
    heights = np.concatenate([r.boxes[:, 3] - r.boxes[:, 1] for _, _, r in per_image]) if per_image else np.zeros(0)
    counts = np.array([len(r.boxes) for _, _, r in per_image])
    settings = {s: int(sum(difficulty_masks(r, config)[s].sum() for _, _, r in per_image)) for s in SETTINGS}
    landmarks = int(sum(_has_landmarks(r, config).sum() for _, _, r in per_image))
    return {
        "images": len(per_image), "faces": int(counts.sum()),
        "faces_per_image": {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())},
        "face_height_px": {q: float(np.percentile(heights, p)) for q, p in
                           (("min", 0), ("p10", 10), ("median", 50), ("p90", 90), ("max", 100))} if len(heights) else {},
        "faces_with_landmarks": landmarks,
        "counted": settings,
        "occluded_over_30pct": int(sum((r.attributes[:, 4] == 2).sum() for _, _, r in per_image)),
    }


def generate_synthetic_dataset(root: str | Path, config: SynthConfig = SynthConfig()) -> dict:
    """Write the dataset into `root` (which must not exist or be empty); returns the manifest."""
    root = Path(root)
    start = time.perf_counter()
    train_annotations, train_flags, train_images = _render_split(root, "train", config.train_images, config)
    (root / "train").mkdir(parents=True, exist_ok=True)
    write_retinaface_labels(root / "train" / "label.txt", train_annotations, train_flags)
    split_dir = root / "wider_face_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    write_wider_bbx_gt(split_dir / "wider_face_train_bbx_gt.txt", train_annotations)

    val_annotations, _, val_images = _render_split(root, "val", config.val_images, config)
    write_wider_bbx_gt(split_dir / "wider_face_val_bbx_gt.txt", val_annotations)
    events, kept = [], {s: [] for s in SETTINGS}
    for event, _kind in config.events:
        images = [(name, r) for e, name, r in val_images if e == event]
        if not images:
            continue
        events.append((event, [(name, np.column_stack([r.boxes[:, :2], r.boxes[:, 2:] - r.boxes[:, :2]]),
                                {key: r.attributes[:, k] for k, key in enumerate(
                                    ("blur", "expression", "illumination", "invalid", "occlusion", "pose"))})
                               for name, r in images]))
        masks = [difficulty_masks(r, config) for _, r in images]
        for setting in SETTINGS:
            kept[setting].append([np.flatnonzero(m[setting]) for m in masks])
    write_ground_truth(root / "ground_truth", events, kept)

    manifest = {
        "dataset": "synthetic (procedurally drawn faces; not WIDER FACE)",
        "generator_version": GENERATOR_VERSION,
        "fingerprint": config.fingerprint(),
        "config": dataclasses.asdict(config),
        "statistics": {"train": _statistics(train_images, config), "val": _statistics(val_images, config)},
        "generation_seconds": round(time.perf_counter() - start, 2),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(root: str | Path) -> dict | None:
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


# What a synthetic dataset consists of under its root. Anything else there (e.g. other
# synthetic sets in sub-folders) is left alone.
OWNED_ENTRIES = ("WIDER_train", "WIDER_val", "train", "wider_face_split", "ground_truth")
_INCOMPLETE = ".synth_incomplete"


def ensure_synthetic_dataset(root: str | Path | None = None, config: SynthConfig | None = None,
                             force: bool = False) -> Path:
    """Generate the dataset at `root` (default data/synthetic) unless it is already there with this config.

    Another config's synthetic dataset at `root` is replaced. A WIDER-format tree that
    ffcore did not write (no manifest) is never touched: that raises `FileExistsError`.
    """
    from ffcore.paths import default_synthetic_root

    root = Path(root) if root is not None else default_synthetic_root()
    config = config or SynthConfig()
    manifest = read_manifest(root)
    if manifest is not None and manifest.get("fingerprint") == config.fingerprint() and not force:
        return root
    foreign = [name for name in OWNED_ENTRIES if (root / name).exists()]
    if foreign and manifest is None and not (root / _INCOMPLETE).exists():
        raise FileExistsError(f"{root} holds {', '.join(foreign)} but no {MANIFEST}: not a synthetic dataset written "
                              f"by ffcore, so it is left alone. Choose another folder (--out) or move it away.")
    # Generate beside the target, then swap our entries in; a marker file flags a swap that
    # was interrupted so the next call may finish the job.
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        generate_synthetic_dataset(staging, config)
        root.mkdir(exist_ok=True)
        (root / _INCOMPLETE).touch()
        (root / MANIFEST).unlink(missing_ok=True)
        for name in OWNED_ENTRIES:
            if (root / name).exists():
                shutil.rmtree(root / name)
            (staging / name).rename(root / name)
        (staging / MANIFEST).rename(root / MANIFEST)
        (root / _INCOMPLETE).unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("synthetic dataset written to %s (fingerprint %s)", root, config.fingerprint())
    return root


# ----------------------------------------------------------------------------------------
# preview
# ----------------------------------------------------------------------------------------
LANDMARK_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00")


def preview_grid(root: str | Path | None = None, n: int = 12, columns: int = 4, split: str = "train",
                 title: str | None = None):
    """A matplotlib Figure with `n` samples, their boxes (green: with landmarks, orange: without)
    and landmarks (eye L red, eye R blue, nose green, mouth L purple, mouth R orange).

    Works on any WIDER-format root; the title says "Synthetic data" only for a tree this
    generator wrote (it has the manifest), unless `title` is given."""
    import matplotlib.pyplot as plt

    from ffcore.data.annotations import read_wider_bbx_gt
    from ffcore.preprocess import read_image

    root = ensure_synthetic_dataset() if root is None else Path(root)
    if split == "train":
        annotations, _ = read_retinaface_labels(root / "train" / "label.txt")
        images_dir = root / "WIDER_train" / "images"
    else:
        annotations, _ = read_wider_bbx_gt(root / "wider_face_split" / "wider_face_val_bbx_gt.txt")
        images_dir = root / "WIDER_val" / "images"
    step = max(1, len(annotations) // max(1, n))
    chosen = annotations[::step][:n]
    rows = math.ceil(len(chosen) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, annotation in zip(axes.ravel(), chosen):
        image = read_image(images_dir / annotation.path)[:, :, ::-1]
        ax.imshow(image)
        for box, points, has in zip(annotation.boxes, annotation.landmarks, annotation.has_landmarks):
            x1, y1, x2, y2 = box
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8,
                                       edgecolor="#00e676" if has else "#ffa000"))
            if has:
                ax.scatter(points[0::2], points[1::2], s=3, c=LANDMARK_COLOURS, linewidths=0)
        ax.set_title(f"{annotation.path.split('/')[0]}  ({len(annotation)} faces)", fontsize=7)
    if title is None:
        synthetic = (root / MANIFEST).is_file()
        title = ("Synthetic data (not WIDER FACE)" if synthetic else "WIDER FACE") + ": boxes and five landmarks"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
