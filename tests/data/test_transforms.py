"""Training augmentation (crop, mirror, determinism) and MixUp / CutMix target mixing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from ffcore.data.mixing import (V2_THESIS_MIX, MixConfig, cutmix_batch, cutmix_targets, mix_batch, mixup_batch,
                                partner_indices)
from ffcore.data.transforms import (TrainTransform, TrainTransformConfig, mirror, pad_to_square,
                                    random_square_crop)
from ffcore.preprocess import MEAN_BGR


def _face(x1, y1, x2, y2, landmarks=True):
    w, h = x2 - x1, y2 - y1
    points = [x1 + 0.3 * w, y1 + 0.4 * h, x1 + 0.7 * w, y1 + 0.35 * h, x1 + 0.5 * w, y1 + 0.6 * h,
              x1 + 0.35 * w, y1 + 0.8 * h, x1 + 0.65 * w, y1 + 0.8 * h]
    return [x1, y1, x2, y2, *(points if landmarks else [-1.0] * 10), 1.0 if landmarks else -1.0]


def _coordinate_image(width=256, height=200):
    """Blue = x, green = y: a crop's top-left pixel tells where the crop was taken."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs, ys, np.full_like(xs, 77)], axis=2).astype(np.uint8)


def test_mirror_swaps_left_and_right_points():
    image = np.zeros((50, 100, 3), np.uint8)
    targets = np.array([_face(20, 10, 60, 40), _face(70, 5, 90, 25, landmarks=False)], np.float32)
    _, flipped = mirror(image, targets)
    np.testing.assert_allclose(flipped[0, :4], [40, 10, 80, 40])
    original = targets[0, 4:14].reshape(5, 2)
    points = flipped[0, 4:14].reshape(5, 2)
    # the image-left eye is the mirror of the image-right eye, and likewise for the mouth corners
    np.testing.assert_allclose(points[0], [100 - original[1, 0], original[1, 1]])
    np.testing.assert_allclose(points[1], [100 - original[0, 0], original[0, 1]])
    np.testing.assert_allclose(points[2], [100 - original[2, 0], original[2, 1]])
    np.testing.assert_allclose(points[3], [100 - original[4, 0], original[4, 1]])
    np.testing.assert_allclose(points[4], [100 - original[3, 0], original[3, 1]])
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]
    # a face without landmarks keeps its -1 markers
    assert (flipped[1, 4:15] == -1).all()
    np.testing.assert_allclose(flipped[1, :4], [10, 5, 30, 25])


def test_landmarks_follow_the_pixels_through_the_training_transform():
    """Coloured dots at the five landmarks must sit under the transformed landmarks, in swapped order."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    image = np.full((200, 200, 3), 128, np.uint8)
    face = np.array([_face(40, 40, 160, 160)], np.float32)
    for k, colour in enumerate(colours):
        cv2.circle(image, (int(face[0, 4 + 2 * k]), int(face[0, 5 + 2 * k])), 5, colour, -1)
    config = TrainTransformConfig(image_size=200, crop_scales=(1.0,), distort=False, mirror_probability=1.0,
                                  interpolations=("nearest",))
    chw, targets = TrainTransform(config)(image, face, np.random.default_rng(0))
    out = (chw.transpose(1, 2, 0) + np.asarray(MEAN_BGR, np.float32)).round().astype(np.uint8)
    points = targets[0, 4:14].reshape(5, 2) * 200
    expected_colour_of_point = [colours[1], colours[0], colours[2], colours[4], colours[3]]
    for point, colour in zip(points, expected_colour_of_point):
        x, y = np.clip(np.round(point).astype(int), 0, 199)
        assert tuple(out[y, x - 1]) == colour
    assert points[0, 0] < points[1, 0]


@pytest.mark.parametrize("seed", range(6))
def test_crop_keeps_exactly_the_faces_whose_centre_is_inside(seed):
    rng = np.random.default_rng(100 + seed)
    image = _coordinate_image()
    corners = rng.uniform(0, 180, (25, 2))
    sizes = rng.uniform(6, 40, (25, 1))
    targets = np.array([_face(x, y, x + s, y + s) for (x, y), (s,) in zip(corners, sizes)], np.float32)
    crop, kept, cropped = random_square_crop(image, targets, np.random.default_rng(seed), scales=(0.3, 0.45, 0.6))
    assert cropped and crop.shape[0] == crop.shape[1]
    left, top, side = int(crop[0, 0, 0]), int(crop[0, 0, 1]), crop.shape[0]
    centres = (targets[:, :2] + targets[:, 2:4]) / 2
    inside = (centres[:, 0] > left) & (centres[:, 0] < left + side) & (centres[:, 1] > top) & (centres[:, 1] < top + side)
    assert len(kept) == inside.sum() >= 1
    expected = targets[inside, :4].copy()
    expected[:, 0::2] = np.clip(expected[:, 0::2], left, left + side) - left
    expected[:, 1::2] = np.clip(expected[:, 1::2], top, top + side) - top
    np.testing.assert_allclose(kept[:, :4], expected, atol=1e-4)
    # at least one face lies wholly inside the crop
    whole = ((targets[:, 0] >= left) & (targets[:, 1] >= top) &
             (targets[:, 2] <= left + side) & (targets[:, 3] <= top + side))
    assert whole.any()


def test_crop_falls_back_to_the_whole_image_and_pads_with_the_mean():
    image = _coordinate_image(120, 80)
    targets = np.array([_face(1, 1, 119, 79)], np.float32)   # no crop can hold this face
    crop, kept, cropped = random_square_crop(image, targets, np.random.default_rng(0), scales=(0.3,), attempts=250)
    assert not cropped and crop is image
    np.testing.assert_array_equal(kept, targets)
    square = pad_to_square(image)
    assert square.shape == (120, 120, 3)
    assert (square[80:] == np.round(MEAN_BGR).astype(np.uint8)).all()


def test_training_transform_is_deterministic_given_the_generator():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (150, 220, 3), dtype=np.uint8)
    targets = np.array([_face(20, 30, 60, 80), _face(100, 40, 130, 75), _face(150, 90, 200, 140, False)], np.float32)
    transform = TrainTransform(TrainTransformConfig(image_size=96))
    first = transform(image, targets, np.random.default_rng([7, 0, 3]))
    again = transform(image, targets, np.random.default_rng([7, 0, 3]))
    other = transform(image, targets, np.random.default_rng([7, 1, 3]))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[0].shape == (3, 96, 96) and first[0].dtype == np.float32 and first[1].dtype == np.float32
    assert not np.array_equal(first[0], other[0])
    assert ((first[1][:, :4] >= 0) & (first[1][:, :4] <= 1)).all()
    assert (first[1][first[1][:, 14] < 0, 4:14] == -1).all()


# ---- MixUp / CutMix -----------------------------------------------------------------------

def test_partner_indices_never_pair_an_image_with_itself():
    for seed in range(20):
        partner = partner_indices(5, np.random.default_rng(seed))
        assert sorted(partner.tolist()) == list(range(5)) and (partner != np.arange(5)).all()


def test_mixup_blends_images_and_unions_targets():
    images = torch.stack([torch.full((3, 8, 8), 10.0), torch.full((3, 8, 8), -20.0)])
    targets = [torch.tensor([_face(0.1, 0.1, 0.3, 0.3)]), torch.tensor([_face(0.5, 0.5, 0.9, 0.9), _face(0.0, 0.6, 0.1, 0.7)])]
    mixed, mixed_targets, weights, lam = mixup_batch(images, targets, np.random.default_rng(0), ratio=0.3)
    assert lam == 0.3
    torch.testing.assert_close(mixed[0], torch.full((3, 8, 8), 0.3 * 10 + 0.7 * -20))
    torch.testing.assert_close(mixed[1], torch.full((3, 8, 8), 0.3 * -20 + 0.7 * 10))
    torch.testing.assert_close(mixed_targets[0], torch.cat([targets[0], targets[1]]))
    torch.testing.assert_close(mixed_targets[1], torch.cat([targets[1], targets[0]]))
    # y = lam * y_A + (1 - lam) * y_B: each face weighs its own image's share of the blend
    torch.testing.assert_close(weights[0], torch.tensor([0.3, 0.7, 0.7]))
    torch.testing.assert_close(weights[1], torch.tensor([0.3, 0.3, 0.7]))
    _, _, _, drawn = mixup_batch(images, targets, np.random.default_rng(1), alpha=0.2)
    assert 0 <= drawn <= 1


def test_cutmix_targets_by_hand():
    region = torch.tensor([0.5, 0.5, 1.0, 1.0])
    a = torch.tensor([_face(0.1, 0.1, 0.3, 0.3),        # untouched: kept with landmarks
                      _face(0.55, 0.55, 0.9, 0.9),      # wholly under the patch: dropped
                      _face(0.35, 0.35, 0.65, 0.65)])   # 1/4 covered: kept; its right mouth corner is under the patch
    b = torch.tensor([_face(0.6, 0.6, 0.8, 0.8),        # inside the patch: kept as is
                      _face(0.4, 0.6, 0.6, 0.8),        # half inside: clipped, landmarks partly outside
                      _face(0.1, 0.1, 0.4, 0.4),        # outside: dropped
                      _face(0.2, 0.7, 0.6, 0.9)])       # a quarter inside (< 40 %): dropped
    mixed = cutmix_targets(a, b, region)
    assert mixed.shape == (4, 15)
    torch.testing.assert_close(mixed[0], a[0])
    torch.testing.assert_close(mixed[1, :4], a[2, :4])
    assert mixed[1, 14] == -1 and (mixed[1, 4:14] == -1).all()
    torch.testing.assert_close(mixed[2], b[0])
    torch.testing.assert_close(mixed[3, :4], torch.tensor([0.5, 0.6, 0.6, 0.8]))
    assert mixed[3, 14] == -1


def test_cutmix_batch_pastes_the_partner_region_and_mixes_targets():
    images = torch.stack([torch.zeros(3, 40, 40), torch.ones(3, 40, 40)])
    targets = [torch.tensor([_face(0.05, 0.05, 0.2, 0.2)]), torch.tensor([_face(0.3, 0.3, 0.7, 0.7)])]
    mixed, mixed_targets, lam = cutmix_batch(images, targets, np.random.default_rng(3), ratio=0.5)
    patch = mixed[0, 0] == 1
    assert 0 < patch.float().mean() <= 0.5 + 1e-6
    ys, xs = torch.nonzero(patch, as_tuple=True)
    region = torch.tensor([xs.min() / 40, ys.min() / 40, (xs.max() + 1) / 40, (ys.max() + 1) / 40])
    torch.testing.assert_close(mixed_targets[0], cutmix_targets(targets[0], targets[1], region))
    assert (mixed[1] == 1 - (mixed[1] == 0).float()).all()      # image 1 got a patch of zeros


def test_mix_batch_off_by_default_returns_the_batch_untouched():
    images = torch.randn(4, 3, 16, 16)
    targets = [torch.tensor([_face(0.1, 0.1, 0.5, 0.5)]) for _ in range(4)]
    result = mix_batch(images, targets, MixConfig(), np.random.default_rng(0))
    assert result.images is images and result.targets == targets
    assert result.target_weights is None and result.methods == [None] * 4


def test_mix_batch_chooses_per_sample_at_the_configured_rates():
    images = torch.randn(8, 3, 16, 16)
    targets = [torch.tensor([_face(0.1, 0.1, 0.5, 0.5)]) for _ in range(8)]
    config = MixConfig(mixup_probability=0.3, cutmix_probability=0.5)
    methods = [m for s in range(200) for m in mix_batch(images, targets, config, np.random.default_rng(s)).methods]
    share = {name: methods.count(name) / len(methods) for name in ("mixup", "cutmix", None)}
    # 1,600 samples: three standard deviations of a share near 0.5 are about 0.04
    assert abs(share["cutmix"] - 0.5) < 0.04 and abs(share["mixup"] - 0.3) < 0.04 and abs(share[None] - 0.2) < 0.04


def test_mix_batch_weights_mixup_faces_by_lam_and_leaves_the_others_at_one():
    images = torch.stack([torch.full((3, 16, 16), float(i)) for i in range(6)])
    targets = [torch.tensor([_face(0.1, 0.1, 0.5, 0.5)] * (i % 3 + 1)) for i in range(6)]
    for seed in range(10):
        result = mix_batch(images, targets, MixConfig(mixup_probability=0.5, cutmix_probability=0.5),
                           np.random.default_rng(seed))
        if "mixup" not in result.methods:
            assert result.target_weights is None
            continue
        for i, method in enumerate(result.methods):
            weights = result.target_weights[i]
            assert weights.shape[0] == result.targets[i].shape[0]
            if method != "mixup":
                assert (weights == 1).all()
                continue
            partner, lam = int(result.partners[i]), float(weights[0])
            assert partner != i
            # the image is lam * A + (1 - lam) * B and the faces weigh the same shares
            torch.testing.assert_close(result.images[i], lam * images[i] + (1 - lam) * images[partner])
            torch.testing.assert_close(weights, torch.tensor([lam] * targets[i].shape[0]
                                                             + [1 - lam] * targets[partner].shape[0]))


def test_mix_config_rejects_shares_above_one():
    with pytest.raises(ValueError, match="at most 1"):
        MixConfig(mixup_probability=0.6, cutmix_probability=0.5)


def test_v2_thesis_mix_uses_the_reports_cutmix_share():
    assert V2_THESIS_MIX.cutmix_probability == 0.5 and V2_THESIS_MIX.mixup_alpha == 0.2


# --------------------------------------------------------------------------------------------
# Parity with Pytorch_Retinaface's `preproc` (tests/reference_preproc.py)
# --------------------------------------------------------------------------------------------

class RecordingGenerator:
    """Our transform's generator, recording every draw as (method, arguments, value)."""

    def __init__(self, seed: int):
        self.rng, self.draws = np.random.default_rng(seed), []

    def integers(self, *args):
        value = self.rng.integers(*args)
        self.draws.append(("integers", args, int(value)))
        return value

    def uniform(self, *args):
        value = self.rng.uniform(*args)
        self.draws.append(("uniform", args, float(value)))
        return value


class ReplayedRandom:
    """Python's `random` methods answering the reference's calls with our transform's draws, in order.

    The two draw in the same order (crop scale, left, top per attempt; distortion order, then
    each distortion's coin and amount; mirror; interpolation), so each reference call meets
    the draw that makes the same decision, and a call that meets another kind of draw fails.
    Our mirror draws u < 1/2 where the reference draws randrange(2) == 1: replayed as that.
    """

    def __init__(self, draws):
        self.draws = list(draws)

    def _next(self, method, args):
        assert self.draws, f"the reference draws more than our transform: {method}{args}"
        kind, drawn_args, value = self.draws.pop(0)
        return kind, drawn_args, value

    def choice(self, sequence):
        kind, args, value = self._next("choice", (len(sequence),))
        assert (kind, args) == ("integers", (len(sequence),)), (kind, args)
        return sequence[value]

    def randrange(self, n):
        kind, args, value = self._next("randrange", (n,))
        if kind == "uniform" and args == () and n == 2:      # the mirror coin
            return int(value < 0.5)
        assert (kind, args) == ("integers", (n,)), (kind, args, n)
        return value

    def uniform(self, a, b):
        kind, args, value = self._next("uniform", (a, b))
        assert (kind, args) == ("uniform", (a, b)), (kind, args)
        return value

    def randint(self, a, b):
        kind, args, value = self._next("randint", (a, b))
        assert (kind, args) == ("integers", (a, b + 1)), (kind, args)
        return value


def _parity_case(seed: int):
    rng = np.random.default_rng(1000 + seed)
    height, width = int(rng.integers(180, 320)), int(rng.integers(180, 320))
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    faces = []
    for k in range(int(rng.integers(1, 6))):
        side = float(rng.uniform(8, min(height, width) / 2))
        x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
        faces.append(_face(x, y, x + side, y + side, landmarks=k % 3 != 2))
    if seed % 5 == 4:   # one face wider than the short side: no square crop holds it, the fallback pads
        image = rng.integers(0, 256, (height, height + 60, 3), dtype=np.uint8)
        faces = [_face(10.5, 4.0, height + 40.0, height - 6.0)]
    return image, np.asarray(faces, np.float32)


@pytest.mark.parametrize("seed", range(20))
def test_training_transform_matches_pytorch_retinaface_preproc_draw_for_draw(seed):
    # What is compared: with every random decision the same (ours drawn from a numpy Generator,
    # replayed into the reference's `random` calls), the network input and the normalised
    # boxes, labels and landmarks. Landmarks of faces without them (label -1) are not compared:
    # the reference crops and scales its -1 placeholders into numbers its loss ignores, ours
    # keeps -1. The network inputs are compared exactly on these seeds; on other inputs they
    # could differ by a grey level on a rare pixel: the reference scales brightness / contrast /
    # saturation in float64, ours in float32, and a product next to an integer can truncate to
    # uint8 either way.
    from reference_preproc import preproc

    image, targets = _parity_case(seed)
    recording = RecordingGenerator(seed)
    ours_image, ours_targets = TrainTransform(TrainTransformConfig(image_size=128))(image.copy(), targets, recording)
    replay = ReplayedRandom(recording.draws)
    # float64 targets, as the reference's WiderFaceDetection builds them (np.zeros((0, 15)))
    ref_image, ref_targets = preproc(128, MEAN_BGR, replay)(image.copy(), targets.astype(np.float64))
    assert replay.draws == [], "our transform drew more than the reference"

    assert ours_targets.shape == ref_targets.shape
    np.testing.assert_allclose(ours_targets[:, :4], ref_targets[:, :4], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ours_targets[:, 14], ref_targets[:, 14])
    with_landmarks = ref_targets[:, 14] > 0
    np.testing.assert_allclose(ours_targets[with_landmarks, 4:14], ref_targets[with_landmarks, 4:14], rtol=0, atol=1e-5)
    assert (ours_targets[~with_landmarks, 4:14] == -1).all()

    assert ours_image.shape == ref_image.shape == (3, 128, 128)
    np.testing.assert_array_equal(ours_image, ref_image)


def test_the_parity_cases_reach_every_branch_of_the_recipe(monkeypatch):
    # The 20 cases above exercise crops and the padded fallback, both distortion orders, both
    # mirror outcomes and most interpolations (seen by wrapping the transform's steps).
    from ffcore.data import transforms

    seen = {"cropped": set(), "contrast_first": set(), "mirrored": 0, "interpolation": set()}

    def crop(*args, **kwargs):
        out = original_crop(*args, **kwargs)
        seen["cropped"].add(out[2])
        return out

    def distort(image, rng):
        first = len(rng.draws)
        out = original_distort(image, rng)
        seen["contrast_first"].add(rng.draws[first][2])
        return out

    def mirror_step(image, targets):
        seen["mirrored"] += 1
        return original_mirror(image, targets)

    original_crop, original_distort, original_mirror = (transforms.random_square_crop, transforms.photometric_distort,
                                                        transforms.mirror)
    monkeypatch.setattr(transforms, "random_square_crop", crop)
    monkeypatch.setattr(transforms, "photometric_distort", distort)
    monkeypatch.setattr(transforms, "mirror", mirror_step)
    for seed in range(20):
        image, targets = _parity_case(seed)
        recording = RecordingGenerator(seed)
        TrainTransform(TrainTransformConfig(image_size=128))(image, targets, recording)
        seen["interpolation"].add(recording.draws[-1][2])
    assert seen["cropped"] == {True, False} and seen["contrast_first"] == {0, 1}
    assert 0 < seen["mirrored"] < 20 and len(seen["interpolation"]) >= 4, seen


# Speed-ups of the training transform that must not change a pixel or a draw
# --------------------------------------------------------------------------------------------

def _distort_pixel_by_pixel(image, rng):
    """The photometric distortion as it was written before the look-up tables: each adjustment computed
    on every pixel in float32 (`_scale_shift`)."""
    from ffcore.data.transforms import _scale_shift

    image = image.copy()
    contrast_first = rng.integers(2) == 1

    def brightness():
        if rng.integers(2):
            _scale_shift(image, beta=rng.uniform(-32, 32))

    def contrast():
        if rng.integers(2):
            _scale_shift(image, alpha=rng.uniform(0.5, 1.5))

    def saturation_and_hue(img):
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        if rng.integers(2):
            _scale_shift(hsv[:, :, 1], alpha=rng.uniform(0.5, 1.5))
        if rng.integers(2):
            hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int32) + int(rng.integers(-18, 19))) % 180
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)

    brightness()
    if contrast_first:
        contrast()
        image = saturation_and_hue(image)
    else:
        image = saturation_and_hue(image)
        contrast()
    return image


@pytest.mark.parametrize("seed", range(40))
def test_the_look_up_table_distortion_is_the_pixel_by_pixel_one(seed):
    from ffcore.data.transforms import photometric_distort

    source = np.random.default_rng(seed)
    # every grey level in every channel, and a crop view (not contiguous) as the transform passes it
    image = source.integers(0, 256, (70, 300, 3), dtype=np.uint8)
    image[1, 7:263, :] = np.arange(256, dtype=np.uint8)[:, None]
    view = image[1:65, 7:290]
    before = view.copy()
    ours_rng, theirs_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    ours = photometric_distort(view, ours_rng)
    np.testing.assert_array_equal(ours, _distort_pixel_by_pixel(view, theirs_rng))
    assert ours_rng.bit_generator.state == theirs_rng.bit_generator.state    # the same draws
    np.testing.assert_array_equal(view, before)                            # the input is left as it was


def test_a_zero_face_image_draws_what_the_full_crop_loop_draws():
    image = np.zeros((300, 420, 3), np.uint8)
    no_faces = np.zeros((0, 15), np.float32)
    # a face wider than the short side fails every attempt of the full loop, as no face does
    unfit = np.array([_face(0, 0, 400, 290)], np.float32)
    for seed in range(5):
        fast, slow = np.random.default_rng(seed), np.random.default_rng(seed)
        out, targets, cropped = random_square_crop(image, no_faces, fast)
        _, _, slow_cropped = random_square_crop(image, unfit, slow)
        assert not cropped and not slow_cropped and out is image and targets.shape == (0, 15)
        assert fast.bit_generator.state == slow.bit_generator.state


def test_the_padding_and_the_mirror_give_the_pixels_of_their_plain_numpy_forms():
    image = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    square = pad_to_square(image)
    expected = np.empty((64, 64, 3), np.uint8)
    expected[:] = np.asarray(MEAN_BGR, np.float32).round().astype(np.uint8)
    expected[:40] = image
    np.testing.assert_array_equal(square, expected)
    flipped, _ = mirror(image[3:30, 5:50], np.zeros((0, 15), np.float32))
    np.testing.assert_array_equal(flipped, image[3:30, 5:50][:, ::-1])
