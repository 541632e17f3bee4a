"""Drawing one synthetic scene with OpenCV and measuring what each face ended up looking like
(box, landmarks and which of them are visible, visible fraction, WIDER attributes)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ffcore.data.synth.config import SynthConfig

SKIN_TONES_BGR = ((189, 215, 250), (160, 195, 235), (120, 170, 225), (90, 135, 190), (60, 95, 145), (40, 65, 100))
HAIR_BGR = ((20, 20, 25), (30, 45, 70), (40, 80, 130), (90, 140, 190), (160, 160, 165), (15, 30, 50))
IRIS_BGR = ((30, 40, 60), (120, 90, 40), (60, 110, 70), (20, 20, 20))


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
