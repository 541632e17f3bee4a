"""Post-processing (ffcore.postprocess): decoding to pixels, thresholds, top-k and NMS."""

import torch

from ffcore.anchors import make_priors
from ffcore.postprocess import PostprocessConfig, postprocess


def _outputs_with_faces(priors, face_indices, score_logit=6.0):
    loc = torch.zeros(1, priors.shape[0], 4)
    landm = torch.zeros(1, priors.shape[0], 10)
    conf = torch.zeros(1, priors.shape[0], 2)
    conf[..., 0] = 4.0  # background everywhere
    for index in face_indices:
        conf[0, index] = torch.tensor([0.0, score_logit])
    return loc, conf, landm


def test_postprocess_decodes_to_pixels_and_suppresses_duplicates():
    height, width = 64, 96
    priors = make_priors(height, width)
    # prior 0 and prior 2 are neighbouring 16-px anchors 8 px apart (IoU 1/3 < 0.4: both kept);
    # prior 1 is the 32-px anchor at the same centre as prior 0 (IoU 0.25 with it: kept too)
    loc, conf, landm = _outputs_with_faces(priors, [0, 2])
    (dets,) = postprocess(loc, conf, landm, (height, width))
    assert len(dets) == 2
    assert torch.allclose(dets.boxes[0], torch.tensor([-4.0, -4.0, 12.0, 12.0]), atol=1e-4)
    assert torch.allclose(dets.landmarks[0], torch.tensor([4.0, 4.0] * 5), atol=1e-4)
    # a resize factor maps back to original pixels
    (half,) = postprocess(loc, conf, landm, (height, width), resize=0.5)
    assert torch.allclose(half.boxes, dets.boxes * 2, atol=1e-4)
    # two identical boxes: NMS keeps one
    loc2, conf2, landm2 = _outputs_with_faces(priors, [0])
    conf2[0, 0] = torch.tensor([0.0, 5.0])
    loc2 = torch.cat([loc2, loc2[:, :1]], dim=1)
    conf2 = torch.cat([conf2, conf2[:, :1]], dim=1)
    landm2 = torch.cat([landm2, landm2[:, :1]], dim=1)
    priors2 = torch.cat([priors, priors[:1]], dim=0)
    (single,) = postprocess(loc2, conf2, landm2, (height, width), priors=priors2)
    assert len(single) == 1


def test_postprocess_respects_thresholds_and_top_k():
    priors = make_priors(64, 64)
    loc, conf, landm = _outputs_with_faces(priors, list(range(0, priors.shape[0], 7)))
    (dets,) = postprocess(loc, conf, landm, (64, 64), config=PostprocessConfig(keep_top_k=3))
    assert len(dets) == 3
    assert torch.all(dets.scores[:-1] >= dets.scores[1:])
    (none,) = postprocess(loc, conf, landm, (64, 64), config=PostprocessConfig(score_threshold=0.999))
    assert len(none) == 0
    records = dets.above(0.5).to_records()
    assert set(records[0]) == {"box", "score", "landmarks"} and len(records[0]["landmarks"]) == 10
