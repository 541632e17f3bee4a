"""The readers of files from elsewhere, fed damaged and hostile input.

label.txt, wider_face_*_bbx_gt.txt, prediction files and the evaluation .mat files each
either read correctly or raise their own error naming the file (and the line, for text);
never a traceback from inside numpy or scipy, and never values (NaN, inf, absurd numbers,
paths leaving their folder) that would silently change an AP. Hand-made cases name what
they test; the seeded random mutations (truncation, byte flips, inserted tokens) look for
what nobody thought of.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ffcore.data.annotations import AnnotationFormatError, read_retinaface_labels, read_wider_bbx_gt
from ffcore.data.matfiles import write_ground_truth
from ffcore.eval import GroundTruthError, PredictionFileError, load_ground_truth, read_prediction_file

LANDMARKS = "15.0 30.0 0.0 35.0 30.0 0.0 25.0 40.0 0.0 18.0 50.0 1.0 32.0 50.0 0.0 0.82"
LABEL_TXT = f"""\
# 0--Parade/a.jpg
10 20 30 40 {LANDMARKS}
50 5 8 9 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1
# 1--Handshaking/b.jpg
4 4 20 20
"""
BBX_GT = """\
0--Parade/a.jpg
2
10 20 30 40 0 0 0 0 0 0
50 5 8 9 2 0 0 0 1 0
1--Handshaking/b.jpg
0
0 0 0 0 0 0 0 0 0 0
"""
PREDICTION = "a\n3\n10 20 30 40 0.91\n50 5 8 9 0.5\n1 1 4 4 0.01\n"
TOKENS = ["nan", "inf", "-inf", "-1", "1e400", "1e30", "0", "-0", "x", "#", "..", "\x00", "é", "2.5", "999999999"]


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _mutations(text: str, count: int, seed: int):
    """Seeded damaged copies: cut at a byte, bytes flipped, a token replaced by a hostile one."""
    rng = np.random.default_rng(seed)
    data = text.encode()
    for i in range(count):
        kind = i % 3
        if kind == 0:
            yield data[: int(rng.integers(0, len(data)))]
        elif kind == 1:
            damaged = bytearray(data)
            for _ in range(int(rng.integers(1, 6))):
                damaged[int(rng.integers(0, len(damaged)))] = int(rng.integers(0, 256))
            yield bytes(damaged)
        else:
            tokens = re.split(r"( |\n)", text)
            spots = [j for j, t in enumerate(tokens) if t.strip()]
            tokens[spots[int(rng.integers(0, len(spots)))]] = TOKENS[int(rng.integers(0, len(TOKENS)))]
            yield "".join(tokens).encode()


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + 1


# --------------------------------------------------------------------------- annotation files

@pytest.mark.parametrize("reader, text, line, words", [
    (read_retinaface_labels, "# a.jpg\n1 2 nan 4\n", 2, "not a finite number"),
    (read_retinaface_labels, "# a.jpg\n1 2 inf 4\n", 2, "not a finite number"),
    (read_retinaface_labels, "# a.jpg\n1 2 1e400 4\n", 2, "not a finite number"),
    (read_retinaface_labels, "# a.jpg\n1 2 3 4\n5 6 1e9 8\n", 3, "larger than any image"),
    (read_retinaface_labels, f"# a.jpg\n1 2 3 4 {LANDMARKS.replace('25.0', 'NaN')}\n", 2, "not a finite number"),
    (read_retinaface_labels, "# a.jpg\n1 2 3 4 15.0 30.0\n", 2, "found 6"),                 # truncated
    (read_retinaface_labels, "# ../../etc/passwd\n1 2 3 4\n", 1, "must be relative"),
    (read_retinaface_labels, "# /abs/a.jpg\n1 2 3 4\n", 1, "must be relative"),
    (read_retinaface_labels, "", 1, "lists no images"),
    (read_retinaface_labels, "\n\n", 1, "lists no images"),
    (read_wider_bbx_gt, "a.jpg\n-1\n", 2, "negative face count"),
    (read_wider_bbx_gt, "a.jpg\n999999999\n1 2 3 4 0 0 0 0 0 0\n", 2, "file ends before"),
    (read_wider_bbx_gt, "a.jpg\n1e3\n", 2, "face count"),
    (read_wider_bbx_gt, "a.jpg\nnan\n", 2, "face count"),
    (read_wider_bbx_gt, "a.jpg\n1\n1 2 nan 4 0 0 0 0 0 0\n", 3, "not a finite number"),
    (read_wider_bbx_gt, "a.jpg\n1\n1 2 3 4 0 0 0 1.5 0 0\n", 3, "must be integers in 0..255"),
    (read_wider_bbx_gt, "a.jpg\n1\n1 2 3 4 0 0 0 0 0 300\n", 3, "must be integers in 0..255"),
    (read_wider_bbx_gt, "a.jpg\n1\n1 2 3 4 0 0 0 0 0 -1\n", 3, "must be integers in 0..255"),
    (read_wider_bbx_gt, "a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 2, "file ends before"),      # truncated
    (read_wider_bbx_gt, "../a.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n", 1, "must be relative"),
    (read_wider_bbx_gt, "", 1, "empty"),
])
def test_hostile_annotation_lines_are_named(tmp_path, reader, text, line, words):
    path = _write(tmp_path, "annotations.txt", text)
    with pytest.raises(AnnotationFormatError) as error:
        reader(path)
    assert f"{path}:{line}:" in str(error.value) and words in str(error.value)
    assert error.value.line_number == line


@pytest.mark.parametrize("reader, text", [(read_retinaface_labels, LABEL_TXT), (read_wider_bbx_gt, BBX_GT)])
@pytest.mark.parametrize("encoding, line", [("latin-1", 3), ("utf-16", 1), ("nul", 3)])
def test_annotation_files_in_other_encodings_are_named(tmp_path, reader, text, encoding, line):
    lines = text.splitlines(keepends=True)
    if encoding == "nul":
        data = "".join(lines[:2]).encode() + lines[2].replace(" ", "\x00", 1).encode() + "".join(lines[3:]).encode()
    else:
        data = ("".join(lines[:2]) + lines[2].replace("0", "é", 1) + "".join(lines[3:])).encode(encoding)
    path = _write(tmp_path, "annotations.txt", data)
    with pytest.raises(AnnotationFormatError, match=rf"{re.escape(str(path))}:{line}: (not UTF-8|binary data)"):
        reader(path)


@pytest.mark.parametrize("reader, text", [(read_retinaface_labels, LABEL_TXT), (read_wider_bbx_gt, BBX_GT)])
def test_a_utf8_byte_order_mark_and_crlf_line_ends_are_accepted(tmp_path, reader, text):
    plain, _ = reader(_write(tmp_path, "plain.txt", text))
    marked, _ = reader(_write(tmp_path, "marked.txt", b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()))
    assert [a.path for a in marked] == [a.path for a in plain]
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(plain, marked))


@pytest.mark.parametrize("reader, text", [(read_retinaface_labels, LABEL_TXT), (read_wider_bbx_gt, BBX_GT)])
def test_damaged_annotation_files_read_cleanly_or_name_file_and_line(tmp_path, reader, text):
    path = tmp_path / "annotations.txt"
    outcomes = {"read": 0, "refused": 0}
    for data in _mutations(text, count=150, seed=16):
        path.write_bytes(data)
        try:
            annotations, report = reader(path)
        except AnnotationFormatError as error:
            assert str(error).startswith(f"{path}:")
            assert 1 <= error.line_number <= _line_count(data)
            outcomes["refused"] += 1
            continue
        outcomes["read"] += 1
        for annotation in annotations:
            assert not annotation.path.startswith("/") and ".." not in annotation.path.split("/")
            boxes = annotation.boxes
            assert np.isfinite(boxes).all() and np.isfinite(annotation.landmarks).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert np.abs(boxes).max(initial=0) <= 2e6
    assert outcomes["read"] and outcomes["refused"]          # the mutations exercise both outcomes


def test_random_bytes_as_annotations_are_refused_with_a_line(tmp_path):
    rng = np.random.default_rng(0)
    for size in (1, 10, 1000, 20000):
        path = _write(tmp_path, "random.txt", rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        for reader in (read_retinaface_labels, read_wider_bbx_gt):
            with pytest.raises(AnnotationFormatError, match=rf"^{re.escape(str(path))}:\d+: "):
                reader(path)


# ----------------------------------------------------------------------------- prediction files

@pytest.mark.parametrize("text, words", [
    ("a\n1\n1 2 3 4 nan\n", "line 3: NaN or infinite"),
    ("a\n1\n1 2 inf 4 0.5\n", "line 3: NaN or infinite"),
    ("a\n1\n1 2 1e400 4 0.5\n", "line 3: NaN or infinite"),
    ("a\ninf\n", "line 2: the box count must be a whole number"),
    ("a\nnan\n", "line 2: the box count must be a whole number"),
    ("a\n-1\n", "line 2: the box count must be a whole number"),
    ("a\n1.5\n1 2 3 4 0.5\n", "line 2: the box count must be a whole number"),
    ("a\n99999999999999999999\n1 2 3 4 0.5\n", "line 2: announces"),
    ("a\n2\n1 2 3 4 0.5\n", "line 2: announces 2"),                          # truncated
    ("a\n1\n1 2 3 4\n", "line 3: expected 5 numbers"),
    ("a\n1\n1 2 3 4 0.5 7\n", "line 3: expected 5 numbers"),
    ("a\n1\n1 2 three 4 0.5\n", "line 3: not a number"),
    ("a\n", "ends after line 1"),
])
def test_hostile_prediction_files_are_named(tmp_path, text, words):
    path = _write(tmp_path, "img.txt", text)
    with pytest.raises(PredictionFileError, match=re.escape(words)) as error:
        read_prediction_file(path)
    assert str(error.value).startswith(str(path))


@pytest.mark.parametrize("data, line", [
    ("é\n1\n1 2 3 4 0.5\n".encode("latin-1"), 1),
    ("a\n1\n1 2 3 4 0.5\n".encode("utf-16"), 1),
    (b"a\n1\n1 2 3\x00 4 0.5\n", 3),
    (b"a\n1\n1 2 3 4 0.5\xff\n", 3),
])
def test_prediction_files_in_other_encodings_are_named(tmp_path, data, line):
    path = _write(tmp_path, "img.txt", data)
    with pytest.raises(PredictionFileError, match=rf"^{re.escape(str(path))}, line {line}: (not UTF-8|binary data)"):
        read_prediction_file(path)


def test_damaged_prediction_files_read_cleanly_or_are_named(tmp_path):
    path = tmp_path / "img.txt"
    outcomes = {"read": 0, "refused": 0}
    for data in _mutations(PREDICTION, count=300, seed=7):
        path.write_bytes(data)
        try:
            boxes = read_prediction_file(path)
        except PredictionFileError as error:
            assert str(error).startswith(str(path))
            outcomes["refused"] += 1
            continue
        outcomes["read"] += 1
        if boxes is not None:
            assert boxes.ndim == 2 and boxes.shape[1] == 5 and np.isfinite(boxes).all()
            count_line = data.decode("utf-8-sig").splitlines()[1]
            assert boxes.shape[0] == int(float(count_line))
    assert outcomes["read"] and outcomes["refused"]


# --------------------------------------------------------------------------------- .mat files

def _ground_truth_dir(root: Path, boxes=None, event="0--Parade", names=("a", "b"), kept=None) -> Path:
    """Official-structure .mat files for one event of two images (3 and 1 faces)."""
    boxes = boxes if boxes is not None else [np.array([[10, 20, 30, 40], [50, 5, 8, 9], [1, 1, 12, 12]]),
                                             np.array([[4, 4, 20, 20]])]
    images = [(name, b, {}) for name, b in zip(names, boxes)]
    kept = kept if kept is not None else [[np.array([0, 1]), np.array([0])]]
    write_ground_truth(root, [(event, images)], {setting: kept for setting in ("easy", "medium", "hard")})
    return root


def test_the_small_ground_truth_reads(tmp_path):
    truth = load_ground_truth(_ground_truth_dir(tmp_path))
    assert truth.names == ("a", "b") and truth.num_faces == 4 and truth.face_counts()["easy"] == 3


def _rewrite(path: Path, change) -> None:
    """Load a .mat, let `change(variables)` edit it, save it back (float boxes, strings where numbers go...)."""
    from scipy.io import loadmat, savemat

    variables = {k: v for k, v in loadmat(str(path)).items() if not k.startswith("__")}
    change(variables)
    savemat(str(path), variables)


def test_the_writer_refuses_boxes_it_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="0--Parade/a"):
        _ground_truth_dir(tmp_path, boxes=[np.array([[10, 20, np.nan, 40]]), np.array([[4, 4, 20, 20]])])


@pytest.mark.parametrize("value, words", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                          (-np.inf, "NaN or infinite"), (1e12, "larger than any image")])
def test_non_finite_and_absurd_ground_truth_boxes_are_named(tmp_path, value, words):
    root = _ground_truth_dir(tmp_path)

    def change(variables):
        variables["face_bbx_list"][0, 0][1, 0] = np.array([[4.0, 4.0, value, 20.0]])

    _rewrite(root / "wider_face_val.mat", change)
    with pytest.raises(GroundTruthError, match=re.escape(words)) as error:
        load_ground_truth(root)
    assert str(root / "wider_face_val.mat") in str(error.value) and "0--Parade/b" in str(error.value)


@pytest.mark.parametrize("build, words", [
    (dict(event="../../outside"), "not a plain file or folder name"),
    (dict(names=("a", "sub/b")), "not a plain file or folder name"),
    (dict(kept=[[np.array([0, 7]), np.array([0])]]), "outside 1..3"),
    (dict(kept=[[np.array([-5]), np.array([0])]]), "outside 1..3"),
])
def test_hostile_ground_truth_values_are_named(tmp_path, build, words):
    root = _ground_truth_dir(tmp_path, **build)
    with pytest.raises(GroundTruthError, match=re.escape(words)) as error:
        load_ground_truth(root)
    assert "wider_" in str(error.value) and str(tmp_path) in str(error.value)


@pytest.mark.parametrize("file, change, words", [
    ("wider_easy_val.mat", lambda v: v["gt_list"][0, 0].__setitem__((0, 0), np.array([[1.5]])),
     "non-integer face indices"),
    ("wider_easy_val.mat", lambda v: v["gt_list"][0, 0].__setitem__((0, 0), np.array([[np.nan]])),
     "NaN or infinite"),
    ("wider_face_val.mat", lambda v: v["face_bbx_list"][0, 0].__setitem__((0, 0), np.array(["ten twenty"])),
     "should hold numbers"),
    ("wider_face_val.mat", lambda v: v["event_list"].__setitem__((0, 0), np.array([[7.0]])),
     "should be a string"),
    ("wider_face_val.mat", lambda v: v.pop("file_list"), "has no variable 'file_list'"),
])
def test_non_integer_non_numeric_and_missing_ground_truth_entries_are_named(tmp_path, file, change, words):
    root = _ground_truth_dir(tmp_path)
    _rewrite(root / file, change)
    with pytest.raises(GroundTruthError, match=re.escape(words)) as error:
        load_ground_truth(root)
    assert str(root / file) in str(error.value)


@pytest.mark.parametrize("name", ["wider_face_val.mat", "wider_hard_val.mat"])
def test_damaged_mat_files_read_cleanly_or_are_named(tmp_path, name):
    root = _ground_truth_dir(tmp_path)
    path = root / name
    original = path.read_bytes()
    rng = np.random.default_rng(3)
    outcomes = {"read": 0, "refused": 0}
    for i in range(120):
        kind = i % 3
        if kind == 0:
            data = original[: int(rng.integers(0, len(original)))]
        elif kind == 1:
            data = bytearray(original)
            for _ in range(int(rng.integers(1, 8))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            data = bytes(data)
        else:
            data = rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
        path.write_bytes(data)
        try:
            truth = load_ground_truth(root)
        except GroundTruthError as error:
            assert str(path) in str(error) or str(root) in str(error)
            outcomes["refused"] += 1
            continue
        outcomes["read"] += 1
        assert np.isfinite(truth.boxes).all() and len(truth.offsets) == truth.num_images + 1
        assert all("/" not in e and e not in ("", ".", "..") for e in truth.events + truth.names)
    assert outcomes["refused"]


# ------------------------------------------------------------------------------ through the CLI

@pytest.mark.parametrize("damage", ["prediction", "mat"])
def test_ffcore_evaluate_reports_a_damaged_input_by_name(tmp_path, damage, capsys):
    from ffcore.cli import main

    gt = _ground_truth_dir(tmp_path / "gt")
    pred = tmp_path / "pred"
    (pred / "0--Parade").mkdir(parents=True)
    for name in ("a", "b"):
        _write(pred / "0--Parade", f"{name}.txt", PREDICTION.replace("a\n", f"{name}\n", 1))
    if damage == "prediction":
        bad = _write(pred / "0--Parade", "b.txt", "b\n1\n4 4 nan 20 0.9\n")
    else:
        bad = gt / "wider_medium_val.mat"
        bad.write_bytes(bad.read_bytes()[:200])
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and str(bad) in out
