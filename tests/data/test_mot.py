"""MOTDetection on MOTChallenge-format sequences the tests write (64x48 JPEG frames, gt.txt, seqinfo.ini)."""
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from repssd.data import DatasetError, SSDTestTransform
from repssd.data.mot import MOT_CLASSES, MOTDetection

W, H, LENGTH = 64, 48, 6


def seqinfo(name, length=LENGTH, width=W, height=H):
    return (f"[Sequence]\nname={name}\nimDir=img1\nframeRate=30\nseqLength={length}\nimWidth={width}\n"
            f"imHeight={height}\nimExt=.jpg\n\n")


def write_sequence(root, name, gt_lines, frames=range(1, LENGTH + 1), info=None):
    """A sequence folder: ``frames`` as 64x48 JPEGs, ``gt_lines`` as gt/gt.txt (None: no gt/)."""
    folder = root / name
    (folder / "img1").mkdir(parents=True)
    for frame in frames:
        cv2.imwrite(str(folder / "img1" / f"{frame:06d}.jpg"), np.full((H, W, 3), 90, np.uint8))
    (folder / "seqinfo.ini").write_text(seqinfo(name) if info is None else info)
    if gt_lines is not None:
        (folder / "gt").mkdir()
        (folder / "gt" / "gt.txt").write_text("\n".join(gt_lines) + "\n")
    return folder


# frame, id, bb_left, bb_top, bb_width, bb_height, flag, class, visibility; comments give the line number
GT = [
    "1,1,11,6,20,35,1,1,0.8",       # 1 pedestrian -> person (10, 5, 29, 39)
    "1,2,41,21,10,20,0,1,1",        # 2 pedestrian, flag 0 -> ignore
    "1,3,1,1,5,5,0,2,1",            # 3 person on vehicle -> ignore
    "1,4,5,5,10,10,0,3,1",          # 4 car -> dropped
    "1,5,5,5,10,10,0,4,1",          # 5 bicycle -> dropped
    "1,6,5,5,10,10,0,5,1",          # 6 motorbike -> dropped
    "1,7,5,5,10,10,0,6,1",          # 7 non-motorized vehicle -> dropped (ignore in MOT20)
    "1,8,21,2,8,12,0,7,0.5",        # 8 static person -> ignore
    "1,9,-9,30,20,30,0,8,0.25",     # 9 distractor, partly outside -> ignore, clipped to (0, 29, 9, 48)
    "1,10,5,5,10,10,0,9,1",         # 10 occluder -> dropped
    "1,11,5,5,10,10,0,10,1",        # 11 occluder on the ground -> dropped
    "1,12,5,5,10,10,0,11,1",        # 12 occluder full -> dropped
    "1,13,50,1,10,20,0,12,0.9",     # 13 reflection -> ignore
    "2,1,12,7,20,35,1,1,1.5",       # 14 visibility clipped to 1
    "2,14,31,11,20,30,1,1,0.1",     # 15 visibility 0.1
    "3,1,10,10,abc,20,1,1,1",       # 16 not a number
    "3,1,10,10,20,20,1,1",          # 17 8 fields
    "3,2,10,10,20,20,1,14,1",       # 18 unknown class
    "9,1,10,10,20,20,1,1,1",        # 19 frame beyond seqLength 6
    "3,3,10,10,0,20,1,1,1",         # 20 zero width
    "4,1,11,11,10,10,1,1,1",        # 21 frame 4's image is missing
    "1,1,30,30,5,5,1,1,1",          # 22 id 1 again in frame 1
    "5,9,1,1,64,48,0,13,-0.2",      # 23 crowd (MOT20) over the whole image -> ignore, visibility 0
]
SEQ = "MOT17-02-SDP"


@pytest.fixture
def root(tmp_path):
    write_sequence(tmp_path, SEQ, GT, frames=[1, 2, 3, 5, 6])
    return tmp_path


def gt_file(root, name=SEQ):
    return root / name / "gt" / "gt.txt"


def test_classes_flags_and_boxes(root):
    with pytest.warns(UserWarning, match="skipped 1 images and 6 objects"):
        ds = MOTDetection(root)
    assert ds.classes == ("person",) and ds.sequences == [SEQ]
    assert ds.ids == [f"{SEQ}/000001", f"{SEQ}/000002", f"{SEQ}/000003", f"{SEQ}/000005", f"{SEQ}/000006"]
    image, target = ds[0]
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    torch.testing.assert_close(target["boxes"], torch.tensor([
        [10.0, 5.0, 29.0, 39.0], [40.0, 20.0, 49.0, 39.0], [0.0, 0.0, 4.0, 4.0], [20.0, 1.0, 27.0, 12.0],
        [0.0, 29.0, 9.0, 48.0], [49.0, 0.0, 58.0, 19.0]]))
    assert target["labels"].tolist() == [1] * 6 and target["size"].tolist() == [H, W]
    assert target["ignore"].tolist() == [False, True, True, True, True, True]
    torch.testing.assert_close(target["visibility"], torch.tensor([0.8, 1.0, 1.0, 0.5, 0.25, 0.9]))
    assert ds.dropped == {MOT_CLASSES[c]: 1 for c in (3, 4, 5, 6, 9, 10, 11)}
    second = ds[1][1]
    assert second["ignore"].tolist() == [False, False] and second["visibility"].tolist() == [1.0, pytest.approx(0.1)]
    assert len(ds[2][1]["boxes"]) == 0 and len(ds[4][1]["boxes"]) == 0  # frames without people are kept
    crowd = ds[3][1]
    torch.testing.assert_close(crowd["boxes"], torch.tensor([[0.0, 0.0, 63.0, 47.0]]))  # the whole frame
    assert crowd["ignore"].tolist() == [True] and crowd["visibility"].tolist() == [0.0]


def test_problems_name_file_and_line(root):
    with pytest.warns(UserWarning):
        ds = MOTDetection(root)
    gt = gt_file(root)
    assert [str(p) for p in ds.problems] == [
        f"{root / SEQ / 'img1' / '000004.jpg'}: image file is missing (image skipped)",
        f"{gt}:16: malformed line '3,1,10,10,abc,20,1,1,1': not 9 numbers (frame, id, bb_left, bb_top, "
        "bb_width, bb_height, flag, class, visibility) (object skipped)",
        f"{gt}:17: 8 comma-separated fields, not 9 (frame, id, bb_left, bb_top, bb_width, bb_height, flag, "
        "class, visibility) (object skipped)",
        f"{gt}:18: id 2: unknown class 14; MOT classes are 1-13 (object skipped)",
        f"{gt}:19: id 1: frame 9 lies outside the sequence (seqLength 6) (object skipped)",
        f"{gt}:20: id 3: bb_width 0.0 and bb_height 20.0 must be positive (object skipped)",
        f"{gt}:22: id 1: id 1 has a second box in frame 1 (object skipped)"]


def test_strict_raises_naming_file_and_line(tmp_path):
    write_sequence(tmp_path / "a", SEQ, GT)  # every frame on disk: the first problem is line 16
    with pytest.raises(DatasetError, match=re.escape(f"{gt_file(tmp_path / 'a')}:16: malformed line")):
        MOTDetection(tmp_path / "a", strict=True)
    write_sequence(tmp_path / "b", SEQ, ["1,1,70,10,5,5,1,1,1"])  # wholly right of the image
    with pytest.raises(DatasetError, match=re.escape(f"{gt_file(tmp_path / 'b')}:1: id 1: box [69.0, 9.0, 73.0")):
        MOTDetection(tmp_path / "b", strict=True)


def test_frame_stride_and_min_visibility(root):
    with pytest.warns(UserWarning, match="skipped 0 images and 6 objects"):  # frame 4 is not wanted
        ds = MOTDetection(root, frame_stride=2, min_visibility=0.3)
    assert ds.ids == [f"{SEQ}/000001", f"{SEQ}/000003", f"{SEQ}/000005"]
    assert ds[0][1]["ignore"].tolist() == [False, True, True, True, True, True]
    with pytest.warns(UserWarning):
        ds = MOTDetection(root, frame_stride=1, min_visibility=0.3)
    assert ds[1][1]["ignore"].tolist() == [False, True]  # visibility 0.1 < 0.3
    for bad in ({"frame_stride": 0}, {"frame_stride": 1.5}, {"min_visibility": 1.5}):
        with pytest.raises(ValueError):
            MOTDetection(root, **bad)


def test_split_lists_sequences(tmp_path):
    for name in ("MOT17-09-SDP", "MOT17-02-SDP", "MOT17-04-SDP"):
        write_sequence(tmp_path, name, ["1,1,11,6,20,35,1,1,0.8"])
    (tmp_path / "seqmaps").mkdir()  # not a sequence: no seqinfo.ini, no gt/ or img1/
    ds = MOTDetection(tmp_path, "all", frame_stride=6)
    assert ds.sequences == ["MOT17-02-SDP", "MOT17-04-SDP", "MOT17-09-SDP"] and len(ds) == 3 and not ds.problems
    ds = MOTDetection(tmp_path, "MOT17-09-SDP, MOT17-02-SDP", frame_stride=6)
    assert ds.ids == ["MOT17-09-SDP/000001", "MOT17-02-SDP/000001"]
    with pytest.raises(DatasetError, match="no sequence MOT17-13-SDP; known: all, MOT17-02-SDP, MOT17-04-SDP, "
                                           "MOT17-09-SDP"):
        MOTDetection(tmp_path, "MOT17-02-SDP,MOT17-13-SDP")
    with pytest.raises(DatasetError, match="lists MOT17-02-SDP more than once"):
        MOTDetection(tmp_path, "MOT17-02-SDP,MOT17-02-SDP")


def test_test_sequences_without_gt_and_bad_seqinfo(tmp_path):
    write_sequence(tmp_path, "MOT17-01-SDP", None)
    with pytest.raises(DatasetError, match="no frame of split 'all' could be read; first problem: .*MOT17-01-SDP"
                                           "/gt/gt.txt: no ground truth \\(a test sequence\\?\\)"):
        MOTDetection(tmp_path)
    write_sequence(tmp_path, "MOT17-02-SDP", ["1,1,11,6,20,35,1,1,0.8"], frames=[1])
    write_sequence(tmp_path, "MOT17-04-SDP", [], info=seqinfo("x").replace("imWidth=64\n", ""))
    write_sequence(tmp_path, "MOT17-05-SDP", [], info=seqinfo("x", length="six"))
    write_sequence(tmp_path, "MOT17-09-SDP", [], info="name=MOT17-09-SDP\n")
    (tmp_path / "MOT17-10-SDP" / "gt").mkdir(parents=True)  # no seqinfo.ini
    with pytest.warns(UserWarning, match="skipped 5 images and 0 objects"):
        ds = MOTDetection(tmp_path, frame_stride=6)
    assert ds.ids == ["MOT17-02-SDP/000001"] and ds.sequences == ["MOT17-02-SDP"]
    problems = "\n".join(map(str, ds.problems))
    for expected in ("MOT17-10-SDP/seqinfo.ini: missing; sequence MOT17-10-SDP left out",
                     "MOT17-01-SDP/gt/gt.txt: no ground truth (a test sequence?); sequence MOT17-01-SDP left out",
                     "MOT17-04-SDP/seqinfo.ini: [Sequence] has no imWidth; sequence MOT17-04-SDP left out",
                     "MOT17-05-SDP/seqinfo.ini: seqLength, imWidth and imHeight must be positive integers",
                     "MOT17-09-SDP/seqinfo.ini: unreadable (MissingSectionHeaderError"):
        assert expected in problems
    assert "MOT17-05-SDP/img1/000001.jpg" not in problems  # seqLength 'six': no frame is looked for


def test_missing_image_folder_is_one_problem(tmp_path):
    write_sequence(tmp_path, "MOT17-02-SDP", ["1,1,11,6,20,35,1,1,0.8"], frames=[1])
    write_sequence(tmp_path, "MOT17-04-SDP", ["1,1,11,6,20,35,1,1,0.8"], frames=[])
    with pytest.warns(UserWarning, match="skipped 6 images"):  # frames 2-6 of -02, and -04 as a whole
        ds = MOTDetection(tmp_path)
    assert ds.ids == ["MOT17-02-SDP/000001"]
    assert str(ds.problems[-1]) == (f"{tmp_path / 'MOT17-04-SDP' / 'img1'}: no *.jpg images; sequence MOT17-04-SDP "
                                    "left out (image skipped)")


def test_mot20_non_motorized_vehicles_are_ignore_regions(tmp_path):
    lines = ["1,1,11,6,20,35,1,1,0.8", "1,2,31,6,10,20,0,6,1", "1,3,5,5,10,10,0,3,1"]
    write_sequence(tmp_path, "MOT20-01", lines, frames=range(1, LENGTH + 1))
    write_sequence(tmp_path, "MOT17-02-SDP", lines, frames=range(1, LENGTH + 1))
    mot20, mot17 = MOTDetection(tmp_path, "MOT20-01"), MOTDetection(tmp_path, "MOT17-02-SDP")
    assert mot20[0][1]["ignore"].tolist() == [False, True] and mot20.dropped == {"car": 1}
    assert mot17[0][1]["ignore"].tolist() == [False] and mot17.dropped == {"car": 1, "non_mot_vehicle": 1}


def test_ssd_test_transform(root):
    with pytest.warns(UserWarning):
        ds = MOTDetection(root, transform=SSDTestTransform(300))
    image, target = ds[0]
    assert image.shape == (3, 300, 300) and image.dtype == torch.uint8
    torch.testing.assert_close(target["boxes"][0], torch.tensor([10 / W, 5 / H, 29 / W, 39 / H]))
    assert target["visibility"].shape == (6,) and target["ignore"].sum() == 5


def test_not_a_mot_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        MOTDetection(tmp_path / "nope")
    with pytest.raises(DatasetError, match="not a MOTChallenge folder"):
        MOTDetection(tmp_path)
    folder = write_sequence(tmp_path, SEQ, [])
    with pytest.raises(DatasetError, match="it is a sequence itself: pass its parent folder"):
        MOTDetection(folder)


@pytest.mark.skipif(not os.environ.get("REPSSD_MOT17"), reason="set REPSSD_MOT17 to a MOT17/train folder")
def test_real_mot17_train():
    root = Path(os.environ["REPSSD_MOT17"])
    split = ",".join(sorted(p.name for p in root.iterdir() if p.name.endswith("-FRCNN")))
    with pytest.warns(UserWarning, match="skipped 0 images and 3 objects"):  # MOT17-10: id 45 wholly off-image
        ds = MOTDetection(root, split)
    assert len(ds) == 5316 and sum(not i for r in ds.records for i in r.ignore) == 112294
