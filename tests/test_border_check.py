"""tools.border_check on a hand-made scores document: which normal frames score like anomalies,
whether their top object is cut by the image border, and the margin of the highest ones."""

import pytest

from tools.border_check import hard_normal_frames


def video(name, labels, smoothed, objects):
    frames, boxes, scores = zip(*objects)
    objects = {"frame": list(frames), "box": list(boxes), "score": list(scores)}
    return {"name": name, "labels": labels, "smoothed_score": smoothed, "objects": objects}


INSIDE, AT_EDGE = [40, 40, 60, 80], [0, 40, 10, 80]  # a 100 x 200 frame


def document():
    labelled = video(
        "01",
        [0, 0, 0, 1, 1, 1, 1],
        [None, 1.0, 5.0, 2.0, 4.0, 6.0, 8.0],  # frame 0 dropped (None)
        [
            (1, INSIDE, 1.0),
            (2, INSIDE, 0.5),
            (2, AT_EDGE, 5.0),  # frame 2's top object is cut by the border
            (3, INSIDE, 2.0),
        ],
    )
    unlabelled = video("02", None, [9.0, 9.0], [(0, INSIDE, 9.0)])  # held-out labels: skipped
    return {"frame_size": [100, 200], "videos": [labelled, unlabelled]}


def test_hard_frames_and_the_margin_of_the_highest_normal_frames():
    result = hard_normal_frames(document(), quantile=0.5, num_highest=2)
    assert result["normal_frames"] == 2 and result["limit"] == pytest.approx(5.0)
    assert result["hard_normal_frames"] == 0  # 5.0 is not above the median of 2, 4, 6, 8
    result = hard_normal_frames(document(), quantile=0.25, num_highest=2)
    assert [(f["frame"], f["border"]) for f in result["frames"]] == [(2, True)]
    assert result["top_object_at_border"] == 1
    highest = result["highest_normal"]
    assert [(h["frame"], h["border"]) for h in highest] == [(2, True), (1, False)]
    # frame 2 (5.0) is above 2 of the 4 abnormal frames, frame 1 (1.0) above none
    assert [h["abnormal_below_percent"] for h in highest] == [50.0, 0.0]


def test_a_scores_file_without_frame_size_is_refused():
    doc = document()
    del doc["frame_size"]
    with pytest.raises(ValueError, match="frame_size"):
        hard_normal_frames(doc)
