"""MultiBoxLoss: parity with the reference values, matching rules, device/dtype independence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ffcore.anchors import make_priors
from ffcore.boxes import box_iou, encode, encode_landmarks, point_form
from ffcore.losses import MultiBoxLoss, MultiBoxLossConfig, match_priors
from ffcore.paths import shared_dir

VECTORS = shared_dir() / "reference" / "multibox_loss_vectors.pt"
REFERENCE_KEYS = {"loc": "loss_loc", "cls": "loss_cls", "landm": "loss_landm"}


@pytest.fixture(scope="module")
def vectors():
    if not VECTORS.is_file():
        pytest.skip(f"reference vectors not found: {VECTORS}")
    return torch.load(VECTORS, weights_only=True)


def _relative_errors(terms, vectors):
    return {name: abs(float(terms[name]) - float(vectors[key])) / abs(float(vectors[key]))
            for name, key in REFERENCE_KEYS.items()}


def test_reference_settings_are_the_defaults(vectors):
    settings, config = vectors["settings"], MultiBoxLossConfig()
    assert settings["overlap_thresh"] == config.overlap_threshold
    assert settings["neg_pos"] == config.neg_pos_ratio
    assert tuple(settings["variance"]) == config.variance
    assert settings["loc_weight"] == config.loc_weight


def test_parity_with_reference_vectors(vectors):
    terms = MultiBoxLoss()(predictions=(vectors["loc"], vectors["conf"], vectors["landm"]),
                           priors=vectors["priors"], targets=vectors["targets"])
    errors = _relative_errors(terms, vectors)
    assert max(errors.values()) < 1e-4, errors


def test_parity_in_float64(vectors):
    terms = MultiBoxLoss()(predictions=tuple(vectors[k].double() for k in ("loc", "conf", "landm")),
                           priors=vectors["priors"].double(), targets=[t.double() for t in vectors["targets"]])
    assert all(t.dtype == torch.float64 for t in terms.values())
    errors = _relative_errors(terms, vectors)
    assert max(errors.values()) < 1e-4, errors


def test_total_is_two_box_plus_class_plus_landmark():
    loss = MultiBoxLoss()
    terms = {"loc": torch.tensor(1.5), "cls": torch.tensor(2.0), "landm": torch.tensor(0.25)}
    assert float(loss.total(terms)) == pytest.approx(2 * 1.5 + 2.0 + 0.25)


def _reference_match(priors, truths, config):
    """Straightforward per-image matching with a loop over ground truths (the specification, literally)."""
    num_priors = priors.shape[0]
    labels = torch.zeros(num_priors, dtype=torch.long)
    index = torch.zeros(num_priors, dtype=torch.long)
    if truths.shape[0] == 0:
        return labels, index
    overlaps = box_iou(truths[:, :4], point_form(priors))
    best_prior_overlap, best_prior = overlaps.max(1)
    valid = best_prior_overlap >= config.force_match_threshold
    if not valid.any():
        return labels, index
    best_truth_overlap, best_truth = overlaps.max(0)
    for j in range(truths.shape[0]):
        if valid[j]:
            best_truth_overlap[best_prior[j]] = 2.0
            best_truth[best_prior[j]] = j
    labels = truths[best_truth, 14].round().long()
    labels[best_truth_overlap < config.overlap_threshold] = 0
    return labels, best_truth


def _random_targets(generator, count, with_tiny=False):
    centres = torch.rand(count, 2, generator=generator)
    sizes = torch.rand(count, 2, generator=generator) * 0.4 + 0.02
    if with_tiny:
        sizes[: count // 2] = torch.rand(count // 2, 2, generator=generator) * 0.01 + 0.002  # below forcing
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    landmarks = torch.rand(count, 10, generator=generator)
    labels = torch.where(torch.rand(count, generator=generator) < 0.3, -1.0, 1.0)
    landmarks[labels < 0] = -1.0
    return torch.cat([boxes, landmarks, labels[:, None]], dim=1)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_matching_equals_per_image_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    priors = make_priors(96, 128)
    counts = [0, 1, 5, 12, 3][: 2 + seed % 4]
    # duplicated boxes make several ground truths compete for the same best prior
    targets = [_random_targets(generator, n, with_tiny=(i % 2 == 1)) for i, n in enumerate(counts)]
    if targets[-1].shape[0] > 1:
        targets[-1] = torch.cat([targets[-1], targets[-1][:1]], dim=0)
    config = MultiBoxLossConfig()
    match = match_priors(priors, targets, config)
    offset = 0
    for b, truths in enumerate(targets):
        labels, index = _reference_match(priors, truths, config)
        assert torch.equal(match.labels[b], labels), f"image {b}"
        positive = labels != 0
        assert torch.equal(match.gt_index[b][positive] - offset, index[positive]), f"image {b}"
        offset += truths.shape[0]


def test_hand_checked_matching():
    priors = make_priors(64, 64)              # 8x8x2 + 4x4x2 + 2x2x2 = 168 priors
    # one face exactly on the 16-px anchor of cell (1, 1) at stride 8: x 4..20 of a 64 px image
    face = torch.tensor([[4 / 64, 4 / 64, 20 / 64, 20 / 64] + [0.1] * 10 + [1.0]])
    # one face far too small for any prior (best IoU < 0.2): never forced, no positives
    speck = torch.tensor([[0.5, 0.5, 0.505, 0.505] + [-1.0] * 10 + [-1.0]])
    match = match_priors(priors, [face, speck, torch.zeros(0, 15)])
    anchor = (1 * 8 + 1) * 2 + 0
    assert match.labels[0, anchor] == 1
    assert (match.labels[0] != 0).sum() >= 1
    assert (match.labels[1] != 0).sum() == 0
    assert (match.labels[2] != 0).sum() == 0


def test_faces_without_landmarks_count_for_boxes_not_landmarks():
    priors = make_priors(64, 64)
    face = torch.tensor([[4 / 64, 4 / 64, 20 / 64, 20 / 64] + [-1.0] * 10 + [-1.0]])
    loc = torch.full((1, priors.shape[0], 4), 0.5, requires_grad=True)
    conf = torch.zeros(1, priors.shape[0], 2, requires_grad=True)
    landm = torch.zeros(1, priors.shape[0], 10, requires_grad=True)
    terms = MultiBoxLoss()(predictions=(loc, conf, landm), priors=priors, targets=[face])
    assert float(terms["landm"].detach()) == 0.0
    assert float(terms["loc"].detach()) > 0.0
    # equal logits: every selected prior costs log 2; 1 positive + 7 negatives, divided by 1 positive
    positives = int((match_priors(priors, [face]).labels != 0).sum())
    assert float(terms["cls"].detach()) == pytest.approx(8 * positives * torch.log(torch.tensor(2.0)).item() / positives,
                                                rel=1e-6)
    MultiBoxLoss().total(terms).backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(conf.grad).all()


def test_box_term_matches_explicit_smooth_l1():
    generator = torch.Generator().manual_seed(3)
    priors = make_priors(64, 64)
    targets = [_random_targets(generator, 4)]
    loc = torch.randn(1, priors.shape[0], 4, generator=generator)
    conf = torch.randn(1, priors.shape[0], 2, generator=generator)
    landm = torch.randn(1, priors.shape[0], 10, generator=generator)
    terms = MultiBoxLoss()(predictions=(loc, conf, landm), priors=priors, targets=targets)
    match = match_priors(priors, targets)
    positive = match.labels[0] != 0
    expected = F.smooth_l1_loss(loc[0, positive], encode(targets[0][match.gt_index[0, positive], :4], priors[positive]),
                                reduction="sum") / positive.sum()
    assert float(terms["loc"]) == pytest.approx(float(expected), rel=1e-6)
    landmark_positive = match.labels[0] > 0
    expected_landm = F.smooth_l1_loss(
        landm[0, landmark_positive],
        encode_landmarks(targets[0][match.gt_index[0, landmark_positive], 4:14], priors[landmark_positive]),
        reduction="sum") / landmark_positive.sum().clamp(min=1)
    assert float(terms["landm"]) == pytest.approx(float(expected_landm), rel=1e-6)


def test_empty_batch_gives_zero_box_terms_and_finite_class_term():
    priors = make_priors(32, 32)
    predictions = (torch.zeros(2, priors.shape[0], 4), torch.zeros(2, priors.shape[0], 2),
                   torch.zeros(2, priors.shape[0], 10))
    terms = MultiBoxLoss()(predictions=predictions, priors=priors, targets=[torch.zeros(0, 15)] * 2)
    assert float(terms["loc"]) == 0.0 and float(terms["landm"]) == 0.0 and float(terms["cls"]) == 0.0


def test_mismatched_priors_raise_a_clear_error():
    priors = make_priors(32, 32)
    predictions = (torch.zeros(1, 7, 4), torch.zeros(1, 7, 2), torch.zeros(1, 7, 10))
    with pytest.raises(ValueError, match="priors"):
        MultiBoxLoss()(predictions=predictions, priors=priors, targets=[torch.zeros(0, 15)])


# ----------------------------------------------------------------- per-face weights (MixUp's lam)

def test_weights_of_one_reproduce_the_reference_vectors(vectors):
    ones = [torch.ones(t.shape[0]) for t in vectors["targets"]]
    predictions = (vectors["loc"], vectors["conf"], vectors["landm"])
    weighted = MultiBoxLoss()(predictions=predictions, priors=vectors["priors"], targets=vectors["targets"],
                              target_weights=ones)
    assert max(_relative_errors(weighted, vectors).values()) < 1e-4
    plain = MultiBoxLoss()(predictions=predictions, priors=vectors["priors"], targets=vectors["targets"])
    for name in plain:
        torch.testing.assert_close(weighted[name], plain[name], rtol=1e-6, atol=0)


def test_each_face_counts_with_its_images_lam_as_the_mixed_labels_say():
    """y = lam * y_A + (1 - lam) * y_B, prior by prior: a prior on a face of weight w has the soft
    class target (1 - w, w) over (background, face) and w times its box and landmark errors."""
    generator = torch.Generator().manual_seed(5)
    priors = make_priors(64, 64)
    lam = 0.3
    faces_a, faces_b = _random_targets(generator, 3), _random_targets(generator, 2)
    targets = [torch.cat([faces_a, faces_b])]
    weights = [torch.tensor([lam] * 3 + [1 - lam] * 2)]
    loc = torch.randn(1, priors.shape[0], 4, generator=generator)
    conf = torch.randn(1, priors.shape[0], 2, generator=generator)
    landm = torch.randn(1, priors.shape[0], 10, generator=generator)
    loss = MultiBoxLoss()
    terms = loss(predictions=(loc, conf, landm), priors=priors, targets=targets, target_weights=weights)
    plain = loss(predictions=(loc, conf, landm), priors=priors, targets=targets)

    match = match_priors(priors, targets)
    positive, landmark_positive = match.labels[0] != 0, match.labels[0] > 0
    w = weights[0][match.gt_index[0]]
    box_error = F.smooth_l1_loss(loc[0, positive], encode(targets[0][match.gt_index[0, positive], :4],
                                                          priors[positive]), reduction="none").sum(1)
    assert float(terms["loc"]) == pytest.approx(float((w[positive] * box_error).sum() / positive.sum()), rel=1e-6)
    landmark_error = F.smooth_l1_loss(
        landm[0, landmark_positive],
        encode_landmarks(targets[0][match.gt_index[0, landmark_positive], 4:14], priors[landmark_positive]),
        reduction="none").sum(1)
    assert float(terms["landm"]) == pytest.approx(
        float((w[landmark_positive] * landmark_error).sum() / landmark_positive.sum()), rel=1e-6)
    # The class term: cross-entropy against the mixed label distribution on the positives, the
    # same mined negatives as without weights (their CE is unchanged, so plain - positives' part).
    soft = torch.stack([1 - w, w], dim=1)[positive]
    positives_soft = F.cross_entropy(conf[0, positive], soft, reduction="sum")
    positives_hard = F.cross_entropy(conf[0, positive], torch.ones(int(positive.sum()), dtype=torch.long),
                                     reduction="sum")
    expected_cls = float(plain["cls"]) + float((positives_soft - positives_hard) / positive.sum())
    assert float(terms["cls"]) == pytest.approx(expected_cls, rel=1e-5)
    assert float(terms["cls"]) != pytest.approx(float(plain["cls"]), rel=1e-3)


def test_a_face_of_weight_zero_gives_no_box_gradient():
    generator = torch.Generator().manual_seed(2)
    priors = make_priors(64, 64)
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.6, 0.6, 0.9, 0.9]])
    landmarks = (boxes[:, :2].repeat(1, 5) + 0.15)
    targets = [torch.cat([boxes, landmarks, torch.ones(2, 1)], dim=1)]
    loc = torch.randn(1, priors.shape[0], 4, generator=generator, requires_grad=True)
    conf = torch.randn(1, priors.shape[0], 2, generator=generator)
    landm = torch.randn(1, priors.shape[0], 10, generator=generator)
    terms = MultiBoxLoss()(predictions=(loc, conf, landm), priors=priors, targets=targets,
                           target_weights=[torch.tensor([0.0, 1.0])])
    terms["loc"].backward()
    match = match_priors(priors, targets)
    on_first = (match.labels[0] != 0) & (match.gt_index[0] == 0)
    on_second = (match.labels[0] != 0) & (match.gt_index[0] == 1)
    assert on_first.any() and on_second.any()
    assert (loc.grad[0, on_first] == 0).all() and (loc.grad[0, on_second] != 0).any()


def test_target_weights_must_match_the_faces():
    priors = make_priors(32, 32)
    predictions = (torch.zeros(1, priors.shape[0], 4), torch.zeros(1, priors.shape[0], 2),
                   torch.zeros(1, priors.shape[0], 10))
    targets = [_random_targets(torch.Generator().manual_seed(0), 3)]
    with pytest.raises(ValueError, match="image 0 has 3 faces but 2 target weights"):
        MultiBoxLoss()(predictions=predictions, priors=priors, targets=targets, target_weights=[torch.ones(2)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MultiBoxLoss()(predictions=predictions, priors=priors, targets=targets, target_weights=[torch.full((3,), 2.0)])
