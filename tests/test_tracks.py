"""Object scores smoothed along tracks (scoring/tracks.py) and their place in the frame protocol."""

import numpy as np
import pytest

from scoring.frame_scores import FrameProtocol
from scoring.tracks import (
    LiveTracks,
    TrackSmoothing,
    box_iou,
    link_to_previous,
    link_tracks,
    track_medians,
)
from tools.track_sweep import saved_objects, sweep


def box(x, y, w=10.0, h=20.0):
    return [x, y, x + w, y + h]


def test_box_iou_of_hand_made_boxes():
    a = np.array([box(0, 0), box(100, 100)])
    b = np.array([box(5, 0), box(0, 0)])
    iou = box_iou(a, b)
    assert iou[0, 0] == pytest.approx(100 / 300)  # 5 x 20 shared of 200 + 200 - 100
    assert iou[0, 1] == pytest.approx(1.0)
    assert iou[1].tolist() == [0.0, 0.0]


def test_links_are_one_to_one_best_overlap_first_and_above_the_threshold():
    previous = np.array([box(0, 0), box(50, 0)])
    current = np.array([box(1, 0), box(3, 0), box(200, 0)])
    # both near boxes overlap the first previous one; the closer takes it, the other starts anew
    assert link_to_previous(previous, current, 0.3).tolist() == [0, -1, -1]
    assert link_to_previous(previous, current[1:2], 0.9).tolist() == [-1]
    assert link_to_previous(np.zeros((0, 4)), current, 0.3).tolist() == [-1, -1, -1]


def test_tracks_follow_a_moving_box_and_break_at_a_gap_or_another_video():
    # one walker moving 2 px a frame in video 0, frames 0-3, gone in frame 4, back in frame 5;
    # a second video starts at the same place
    frames = [0, 1, 2, 3, 5, 0]
    videos = [0, 0, 0, 0, 0, 1]
    boxes = np.array([box(2 * f, 0) for f in frames])
    track = link_tracks(np.array(videos), np.array(frames), boxes, 0.3)
    assert len(set(track[:4].tolist())) == 1
    assert track[4] not in track[:4] and track[5] not in track[:5]


def test_track_medians_remove_a_brief_spike_and_keep_a_lasting_one():
    frames = np.arange(12)
    brief = np.ones(12)
    brief[5] = 9.0
    lasting = np.ones(12)
    lasting[3:12] = 9.0
    scores = np.r_[brief, lasting]
    track = np.r_[np.zeros(12, int), np.ones(12, int)]
    out = track_medians(scores, track, np.r_[frames, frames], window=5)
    assert out[:12].tolist() == [1.0] * 12
    assert out[12 + 5 :].tolist() == [9.0] * 7  # within the lasting stretch
    # at a track's end the window is clipped: the last frame's median is over its last 3 scores
    assert out[23] == 9.0
    assert track_medians(scores, track, np.r_[frames, frames], window=1).tolist() == scores.tolist()


def test_track_smoothing_settings_are_checked_and_need_boxes():
    with pytest.raises(ValueError, match="eval.track_window"):
        TrackSmoothing(window=4)
    with pytest.raises(ValueError, match="eval.track_iou"):
        TrackSmoothing(window=5, min_iou=0.0)
    scores = np.array([1.0, 2.0])
    off = TrackSmoothing()
    assert off.apply(scores, np.zeros(2, int), np.arange(2), None).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="boxes"):
        TrackSmoothing(window=3).apply(scores, np.zeros(2, int), np.arange(2), None)


def random_scene(seed: int, num_frames: int = 40):
    """Walkers entering, moving, leaving (some frames empty), with random scores."""
    rng = np.random.default_rng(seed)
    frames, boxes = [], []
    for _ in range(6):
        start, length = rng.integers(0, num_frames), rng.integers(1, 15)
        x, y, vx = rng.uniform(0, 300), rng.uniform(0, 200), rng.uniform(-4, 4)
        for f in range(start, min(num_frames, start + length)):
            frames.append(f)
            boxes.append(box(x + vx * (f - start), y))
    frames = np.array(frames, dtype=np.int64)
    return frames, np.array(boxes).reshape(-1, 4), rng.normal(size=len(frames))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("window", [1, 3, 9])
def test_live_tracks_equal_the_whole_video_smoothing(seed, window):
    frames, boxes, scores = random_scene(seed)
    smoothing = TrackSmoothing(window=window, min_iou=0.3)
    offline = smoothing.apply(scores, np.zeros(len(frames), int), frames, boxes)
    live = LiveTracks(smoothing)
    released = []
    for index in range(40):
        mine = np.random.default_rng(index).permutation(np.flatnonzero(frames == index))
        ready = live.push(index, boxes[mine], scores[mine], payload=mine)
        assert all(i <= index - window // 2 for i, _, _ in ready)  # never later than needed
        released += ready
    released += live.finish()
    assert [i for i, _, _ in released] == list(range(40))
    for _, smoothed, mine in released:
        np.testing.assert_allclose(smoothed, offline[mine])


def test_frame_protocol_smooths_along_tracks_before_the_maximum():
    # two walkers in every frame of one video; walker B has a one-frame error spike at frame 10
    num = 30
    frames = np.repeat(np.arange(num), 2)
    boxes = np.array(
        [box(50 + f, 0) if k == 0 else box(200 - f, 0) for f in range(num) for k in (0, 1)]
    )
    scores = np.zeros(2 * num)
    scores[2 * 10 + 1] = 5.0
    video = np.zeros(2 * num, int)
    paper = FrameProtocol(drop_first=0, smoothing="none")
    tracked = FrameProtocol(drop_first=0, smoothing="none", tracks=TrackSmoothing(window=5))
    raw_paper, _ = paper.frame_scores(scores, video, frames, [num], 0.0)
    raw_tracked, _ = tracked.frame_scores(scores, video, frames, [num], 0.0, boxes)
    assert raw_paper[0][10] == 5.0 and raw_tracked[0][10] == 0.0
    with pytest.raises(ValueError, match="boxes"):
        tracked.frame_scores(scores, video, frames, [num], 0.0)


def scores_doc(fused, boxes, frames, labels, window=1):
    """A minimal scores.json document of one video (no border groups, S_p only)."""
    return {
        "w_r": 0.0,
        "w_p": 1.0,
        "drop_first": 0,
        "smoothing": {"smoothing": "none", "window": 17, "sigma": 3.0},
        "tracks": {"window": window, "min_iou": 0.3},
        "border_stats": False,
        "train_stats": {"mean_r": 0.0, "std_r": 1.0, "mean_p": 0.0, "std_p": 1.0},
        "videos": [
            {
                "name": "01",
                "num_frames": len(labels),
                "labels": labels,
                "objects": {"frame": frames, "box": boxes, "score": fused, "fused": fused},
            }
        ],
    }


def test_track_sweep_rescores_saved_objects():
    # a walker with one spike in a normal frame, an anomaly lasting frames 20-29
    num = 30
    frames = [f for f in range(num) for _ in (0, 1)]
    boxes = [box(50 + f, 0) if k == 0 else box(200 - f, 0) for f in range(num) for k in (0, 1)]
    fused = [0.0] * (2 * num)
    fused[2 * 5] = 9.0
    for f in range(20, num):
        fused[2 * f + 1] = 5.0
    labels = [int(f >= 20) for f in range(num)]
    doc = scores_doc(fused, boxes, frames, labels)
    table = sweep(doc, windows=[1, 5], ious=[0.3])
    assert table["1/0.3"] < 100.0 and table["5/0.3"] == 100.0  # the spike no longer outranks
    doc_tracked = scores_doc(fused, boxes, frames, labels, window=5)
    del doc_tracked["videos"][0]["objects"]["fused"]
    with pytest.raises(ValueError, match="fused"):
        saved_objects(doc_tracked)
