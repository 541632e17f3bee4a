"""Readers of the WIDER FACE annotation formats, layout discovery and the validation index."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from ffcore.data.annotations import AnnotationFormatError, read_retinaface_labels, read_wider_bbx_gt
from ffcore.data.datasets import MissingImagesError, RetinaFaceLabelDataset, WiderBBoxDataset, detection_collate
from ffcore.data.layout import LayoutError, WiderFaceLayout
from ffcore.data.transforms import EvalTransform, EvalTransformConfig, TrainTransform, TrainTransformConfig
from ffcore.data.validation import ValidationIndex
from ffcore.paths import shared_dir

REAL_GT = shared_dir() / "data" / "widerface_val_gt"

LABEL_TXT = """\
# 0--Parade/a.jpg
10 20 30 40 15.0 30.0 0.0 35.0 30.0 0.0 25.0 40.0 0.0 18.0 50.0 1.0 32.0 50.0 0.0 0.82
50 5 8 9 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
60 60 0 12 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
# 1--Handshaking/b.jpg
4 4 20 20
"""

BBX_GT = """\
0--Parade/a.jpg
3
10 20 30 40 0 0 0 0 0 0 
50 5 8 9 2 0 0 0 1 0 
60 60 12 0 0 0 0 0 0 0 
1--Handshaking/b.jpg
0
0 0 0 0 0 0 0 0 0 0 
"""


def _write_images(images_dir, paths, size=(80, 100)):
    for relative in paths:
        path = images_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((*size, 3), 128, np.uint8))


@pytest.fixture
def tiny_tree(tmp_path):
    """A WIDER-format root with both annotation formats and two 100x80 images."""
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "label.txt").write_text(LABEL_TXT)
    (tmp_path / "wider_face_split").mkdir()
    (tmp_path / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text(BBX_GT)
    _write_images(tmp_path / "WIDER_train" / "images", ["0--Parade/a.jpg", "1--Handshaking/b.jpg"])
    return tmp_path


def test_retinaface_reader_boxes_landmarks_and_dropped(tiny_tree, caplog):
    with caplog.at_level(logging.WARNING, logger="ffcore.data"):
        annotations, report = read_retinaface_labels(tiny_tree / "train" / "label.txt")
    assert [a.path for a in annotations] == ["0--Parade/a.jpg", "1--Handshaking/b.jpg"]
    first = annotations[0]
    # x y w h -> x1 y1 x2 y2; the zero-width box on line 4 is dropped and counted
    np.testing.assert_allclose(first.boxes, [[10, 20, 40, 60], [50, 5, 58, 14]])
    np.testing.assert_allclose(first.landmarks[0], [15, 30, 35, 30, 25, 40, 18, 50, 32, 50])
    assert first.has_landmarks.tolist() == [True, False]
    assert report.dropped_boxes == 1 and report.dropped_examples == [f"{tiny_tree / 'train' / 'label.txt'}:4"]
    assert "dropped 1 boxes" in caplog.text
    targets = first.targets_pixels()
    assert targets.shape == (2, 15) and targets.dtype == np.float32
    assert targets[:, 14].tolist() == [1.0, -1.0]
    assert (targets[1, 4:14] == -1).all()
    # a 4-number line (boxes only) is a face without landmarks
    assert annotations[1].has_landmarks.tolist() == [False]


def test_bbx_gt_reader(tiny_tree):
    annotations, report = read_wider_bbx_gt(tiny_tree / "wider_face_split" / "wider_face_train_bbx_gt.txt")
    assert len(annotations) == 2
    np.testing.assert_allclose(annotations[0].boxes, [[10, 20, 40, 60], [50, 5, 58, 14]])
    assert annotations[0].attributes[1].tolist() == [2, 0, 0, 0, 1, 0]
    assert not annotations[0].has_landmarks.any()
    assert len(annotations[1]) == 0                    # count 0 + its all-zero placeholder line
    assert report.dropped_boxes == 1 and report.images_without_faces == 1


@pytest.mark.parametrize("reader, text, line, words", [
    (read_retinaface_labels, "# a.jpg\n1 2 3\n", 2, "found 3"),
    (read_retinaface_labels, "# a.jpg\n1 2 x 4\n", 2, "numbers only"),
    (read_retinaface_labels, "1 2 3 4\n", 1, "before the first"),
    (read_wider_bbx_gt, "a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 2, "ends before"),
    (read_wider_bbx_gt, "a.jpg\ntwo\n", 2, "face count"),
    (read_wider_bbx_gt, "a.jpg\n1\n1 2 3 4 0 0\n", 3, "expected 10 numbers"),
])
def test_malformed_line_names_file_and_line(tmp_path, reader, text, line, words):
    path = tmp_path / "annotations.txt"
    path.write_text(text)
    with pytest.raises(AnnotationFormatError) as error:
        reader(path)
    assert f"{path}:{line}:" in str(error.value) and words in str(error.value)
    assert error.value.line_number == line


def test_missing_image_is_named(tiny_tree):
    (tiny_tree / "WIDER_train" / "images" / "1--Handshaking" / "b.jpg").unlink()
    with pytest.raises(MissingImagesError, match="1--Handshaking/b.jpg"):
        RetinaFaceLabelDataset(tiny_tree / "train" / "label.txt", tiny_tree / "WIDER_train" / "images")


def test_datasets_samples_follow_the_data_contract(tiny_tree):
    layout = WiderFaceLayout.find(tiny_tree, need=("train",))
    transform = TrainTransform(TrainTransformConfig(image_size=64))
    dataset = layout.train_dataset(transform=transform, seed=3)
    assert isinstance(dataset, RetinaFaceLabelDataset) and dataset.dropped_boxes == 1
    image, targets = dataset[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert targets.shape[1] == 15 and targets.dtype == torch.float32
    assert ((targets[:, :4] >= 0) & (targets[:, :4] <= 1)).all()
    # the same sample twice is identical; another epoch draws another augmentation
    again_image, again_targets = dataset[0]
    assert torch.equal(image, again_image) and torch.equal(targets, again_targets)
    dataset.set_epoch(1)
    assert not torch.equal(image, dataset[0][0])
    images, target_list = detection_collate([dataset[0], dataset[1]])
    assert images.shape == (2, 3, 64, 64) and isinstance(target_list, list) and len(target_list) == 2

    boxes_only = layout.train_dataset(transform=transform, prefer_landmarks=False)
    assert isinstance(boxes_only, WiderBBoxDataset)
    _, targets = boxes_only[0]
    assert (targets[:, 14] == -1).all() and (targets[:, 4:14] == -1).all()


def test_raw_sample_and_eval_transform(tiny_tree):
    dataset = RetinaFaceLabelDataset(tiny_tree / "train" / "label.txt", tiny_tree / "WIDER_train" / "images")
    image, targets = dataset[0]                        # no transform: BGR uint8 and pixel targets
    assert image.shape == (80, 100, 3) and image.dtype == np.uint8
    chw, normalised = EvalTransform(EvalTransformConfig(image_size=50))(image, targets)
    assert chw.shape == (3, 50, 50)
    # 100x80 -> 50x40, padded to 50x50: x divides by 100, y by 80 * 50/40 = 100
    np.testing.assert_allclose(normalised[0, :4], [0.1, 0.2, 0.4, 0.6], atol=1e-6)
    np.testing.assert_allclose(normalised[0, 4:6], [0.15, 0.30], atol=1e-6)
    assert (normalised[1, 4:14] == -1).all()
    # the padding is the mean colour, i.e. zero after mean subtraction
    assert np.abs(chw[:, 45:, :]).max() == 0


def test_layout_error_lists_everything_missing(tmp_path):
    (tmp_path / "WIDER_val" / "images").mkdir(parents=True)
    with pytest.raises(LayoutError) as error:
        WiderFaceLayout.find(tmp_path, need=("train", "val_gt"))
    message = str(error.value)
    assert str(tmp_path) in message
    for expected in ("WIDER_train/images", "train/label.txt", "wider_face_train_bbx_gt.txt",
                     "wider_face_val.mat", "eval_tools/ground_truth", "MISSING"):
        assert expected in message, expected
    assert message.count("MISSING") == 3
    # what is present is not reported for needs that were not asked for
    assert "WIDER_val" not in message


def test_layout_finds_ground_truth_in_eval_tools(tmp_path):
    gt = tmp_path / "eval_tools" / "ground_truth"
    gt.mkdir(parents=True)
    for name in ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"):
        (gt / name).touch()                            # discovery looks for the files, it does not read them
    assert WiderFaceLayout.find(tmp_path, need=("val_gt",)).ground_truth_dir == gt


@pytest.mark.skipif(not (REAL_GT / "wider_face_val.mat").is_file(), reason="shared WIDER FACE ground truth absent")
def test_validation_index_on_the_official_ground_truth(tmp_path):
    index = ValidationIndex.from_ground_truth(REAL_GT, tmp_path / "WIDER_val" / "images")
    assert len(index) == 3226 and len(index.events) == 61
    first = index[0]
    assert (first.event, first.name) == ("0--Parade", "0_Parade_marchingband_1_465")
    assert first.image_path == tmp_path / "WIDER_val" / "images" / "0--Parade" / "0_Parade_marchingband_1_465.jpg"
    assert ValidationIndex.prediction_path("out", first).as_posix() == "out/0--Parade/0_Parade_marchingband_1_465.txt"
    with pytest.raises(MissingImagesError, match="3226 of 3226"):
        index.verify_images()


class _UInt8Images(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, index):
        image = torch.from_numpy(np.random.default_rng(index).integers(0, 256, (3, 16, 16), dtype=np.uint8))
        return image, torch.full((index % 3, 15), float(index))


def test_the_collate_stacks_what_torch_stack_stacks_in_the_trainer_and_in_a_loader_process():
    samples = [_UInt8Images()[i] for i in range(6)]
    expected = torch.stack([image for image, _ in samples])
    images, targets = detection_collate(samples)
    assert images.dtype == torch.uint8 and torch.equal(images, expected)
    assert [t.shape[0] for t in targets] == [0, 1, 2, 0, 1, 2]
    loader = torch.utils.data.DataLoader(_UInt8Images(), batch_size=6, num_workers=1, collate_fn=detection_collate)
    (from_worker, worker_targets), = list(loader)
    assert torch.equal(from_worker, expected) and all(torch.equal(a, b) for a, b in zip(worker_targets, targets))
