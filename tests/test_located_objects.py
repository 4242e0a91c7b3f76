"""tools.located_objects on hand-made scores documents."""

import pytest

from tools.located_objects import located_objects, rival_frames, wide_boxes


def _doc(s_r, s_p, labels=(0, 1, 1), name="01"):
    # two objects per frame; frame 0 normal, frames 1-2 abnormal
    frames = [f for f in range(len(labels)) for _ in range(2)]
    boxes = [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]] * len(labels)
    objects = {"frame": frames, "box": boxes, "s_r": s_r, "s_p": s_p}
    video = {
        "name": name,
        "labels": list(labels),
        "smoothed_score": [1.0] * len(labels),
        "objects": objects,
    }
    return {"videos": [video, {**video, "name": "07", "labels": None}]}


def test_the_located_object_is_the_locators_top_object():
    locator = _doc(s_r=[0, 1, 9, 1, 1, 9], s_p=[0] * 6)
    doc = _doc(s_r=[0] * 6, s_p=[5, 2, 1, 7, 8, 3])
    (row,) = located_objects(doc, locator)  # the unlabelled video is skipped
    assert row["located_median"] == pytest.approx(2.0)  # objects 0 of frame 1 (1), 1 of 2 (3)
    assert row["abnormal_max_median"] == pytest.approx(7.5)
    assert row["normal_max_median"] == pytest.approx(5.0)
    assert row["normal_object_median"] == pytest.approx(3.5)
    assert (row["abnormal_frames"], row["normal_frames"]) == (2, 1)


def test_different_objects_are_refused():
    locator = _doc(s_r=[0] * 6, s_p=[0] * 6)
    doc = _doc(s_r=[0] * 6, s_p=[0] * 6)
    doc["videos"][0]["objects"]["box"][0] = [1.0, 1.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="video 01"):
        located_objects(doc, locator)


def test_wide_boxes_compare_with_training_boxes_at_the_same_height():
    # training: 20 boxes 10 px wide with bottoms at y 30-39 (band 20-39) and 20 boxes 40 px
    # wide with bottoms at y 100-119
    near = [[0, 60, 40, 100 + i] for i in range(20)]
    train = [[0, 10, 10, 30 + i % 10] for i in range(20)] + near
    boxes = [[0, 10, 16, 35], [0, 10, 14, 35], [0, 60, 50, 110], [0, 60, 70, 110], [0, 0, 70, 70]]
    # band 20-39: 16 > 1.5 * 10, 14 not; band 100-119: 50 not (< 60), 70 wide;
    # band 60-79 has no training boxes: the overall p90 (40) is the reference, 70 > 60
    assert wide_boxes(boxes, train).tolist() == [True, False, False, True, True]


def test_rival_frames_count_border_and_wide_top_objects():
    locator = _doc(s_r=[0, 0, 9, 1, 1, 9, 0, 0], s_p=[0] * 8, labels=(1, 1, 0, 0))
    doc = _doc(s_r=[0] * 8, s_p=[4, 0, 0, 2, 9, 0, 0, 1], labels=(1, 1, 0, 0))
    doc["frame_size"] = [100, 100]
    doc["train_stats"] = {"groups": {"margin": 1.0}}
    # located objects: 0 of frame 0 (4) and 0 of frame 1 (0), median 2; the top object of
    # normal frame 2 (9) is at (0, 0), on the border; frame 3's top object (1) stays below 2
    train = [[0, 0, 10, 10]] * 10 + [[20, 20, 30, 30]] * 10
    (row,) = rival_frames(doc, locator, train)
    assert row == {"video": "01", "threshold": 2.0, "rival_frames": 1, "border": 1, "wide": 0}
