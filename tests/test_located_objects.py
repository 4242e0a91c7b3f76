"""tools.located_objects on hand-made scores documents."""

import pytest

from tools.located_objects import located_objects


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
