"""Frame scoring and AUROC on hand-built cases (docs/method.md §6)."""

import numpy as np
import pytest

from scoring.frame_scores import (
    auroc_summary,
    drop_first_frames,
    empty_frame_score,
    flow_magnitude_object_scores,
    frame_max_scores,
    fuse_scores,
    macro_auroc,
    micro_auroc,
    smooth,
    video_frame_scores,
)

STATS = {"mean_r": 10.0, "std_r": 2.0, "mean_p": 4.0, "std_p": 0.5}


def test_fusion_is_weighted_sum_of_z_scores():
    fused = fuse_scores(np.array([12.0, 10.0]), np.array([4.0, 5.0]), STATS, 1.0, 0.1)
    np.testing.assert_allclose(fused, [1.0, 0.2])


def test_zero_weight_ignores_a_constant_branch():
    stats = dict(STATS, std_p=0.0)
    np.testing.assert_allclose(fuse_scores(np.array([14.0]), np.zeros(1), stats, 1.0, 0.0), [2.0])
    with pytest.raises(ValueError, match="std_p"):
        fuse_scores(np.array([14.0]), np.zeros(1), stats, 1.0, 0.1)


def test_empty_frame_gets_zero_error_object_score():
    assert empty_frame_score(STATS, 1.0, 0.1) == pytest.approx(-10 / 2 + 0.1 * -4 / 0.5)


def test_frame_score_is_max_over_all_objects_of_the_frame():
    # video 0: frame 1 has three objects (listed apart, as if in different batches), frame 2 none.
    scores = np.array([0.5, 3.0, -1.0, 7.0, 2.0, 9.0])
    video = np.array([0, 0, 0, 1, 0, 1])
    frame = np.array([1, 0, 1, 0, 1, 2])
    out = frame_max_scores(scores, video, frame, [3, 4], empty_score=-5.0)
    np.testing.assert_array_equal(out[0], [3.0, 2.0, -5.0])
    np.testing.assert_array_equal(out[1], [7.0, -5.0, 9.0, -5.0])


def test_frame_index_outside_video_is_an_error():
    with pytest.raises(ValueError, match="video 0"):
        frame_max_scores(np.ones(1), np.zeros(1, int), np.array([5]), [3], 0.0)


def test_first_frames_are_dropped():
    out = drop_first_frames(np.arange(6.0), 4)
    assert np.isnan(out[:4]).all()
    np.testing.assert_array_equal(out[4:], [4.0, 5.0])


def test_median_filter_ignores_dropped_frames_and_repeats_edges():
    scores = np.array([np.nan, np.nan, 1.0, 9.0, 1.0, 1.0, 5.0, 5.0])
    out = smooth(scores, "median", window=3)
    assert np.isnan(out[:2]).all()
    # nearest-edge padding: the first scored frame sees [1, 1, 9], the last [5, 5, 5]
    np.testing.assert_array_equal(out[2:], [1.0, 1.0, 1.0, 1.0, 5.0, 5.0])


def test_median_window_17_removes_a_short_spike():
    scores = np.zeros(40)
    scores[20:25] = 10.0  # 5 frames < half the window
    assert smooth(scores, "median", window=17).max() == 0.0
    scores[15:30] = 10.0  # 15 frames > half the window
    assert smooth(scores, "median", window=17)[22] == 10.0


def test_smoothing_options():
    scores = np.array([0.0, 0.0, 10.0, 0.0, 0.0])
    np.testing.assert_array_equal(smooth(scores, "none"), scores)
    gauss = smooth(scores, "gaussian", sigma=1.0)
    assert 0 < gauss[2] < 10.0 and gauss[1] > 0
    assert gauss[1] == pytest.approx(gauss[3])
    with pytest.raises(ValueError, match="eval.smoothing"):
        smooth(scores, "mean")
    with pytest.raises(ValueError, match="eval.window"):
        smooth(scores, "median", window=4)


def test_micro_and_macro_auroc_differ():
    # Each video separates perfectly, but video 1's scores sit above video 0's abnormal ones.
    scores = [np.array([0.0, 0.0, 1.0, 1.0]), np.array([2.0, 2.0, 3.0, 3.0])]
    labels = [np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])]
    assert macro_auroc(scores, labels) == 1.0
    # pairs (abnormal, normal): 4 x 4 = 16; misordered: video 0's abnormal (1) vs video 1's
    # normal (2): 2 x 2 = 4 -> AUROC = 12 / 16
    assert micro_auroc(scores, labels) == pytest.approx(0.75)


def test_unlabelled_and_one_class_videos():
    scores = [np.array([0.0, 1.0]), np.array([5.0, 6.0]), np.array([np.nan, 0.5, 0.7])]
    labels = [
        np.array([0, 1]),
        None,
        np.array([1, 0, 0]),
    ]  # video 2: label 1 only on a dropped frame
    summary = auroc_summary(scores, labels)
    assert summary["macro_auroc"] == 1.0  # video 2 has one class among scored frames
    assert summary["per_video_auroc"] == [1.0, None, None]
    assert summary["num_labelled_videos"] == 2
    assert summary["num_scored_frames"] == 4
    assert summary["num_abnormal_frames"] == 1
    # micro: normal {0, 0.5, 0.7} vs abnormal {1} -> 1.0
    assert summary["micro_auroc"] == 1.0
    assert micro_auroc([np.zeros(2)], [np.zeros(2, int)]) is None


def test_label_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 labels for 2 frames"):
        micro_auroc([np.zeros(2)], [np.zeros(3, int)])


def test_video_frame_scores_end_to_end():
    obj = np.array([1.0, 2.0, 8.0])
    raw, smoothed = video_frame_scores(
        obj, np.array([0, 0, 0]), np.array([4, 4, 6]), [8], -1.0, 4, "median", 3, 3.0
    )
    np.testing.assert_array_equal(raw[0][4:], [2.0, -1.0, 8.0, -1.0])
    np.testing.assert_array_equal(smoothed[0][4:], [2.0, 2.0, -1.0, -1.0])
    assert np.isnan(raw[0][:4]).all() and np.isnan(smoothed[0][:4]).all()


def test_flow_magnitude_baseline():
    flows = np.zeros((2, 4, 32, 32, 2), np.float32)
    flows[1, -1, ..., 0] = 3.0
    flows[1, -1, ..., 1] = 4.0
    flows[0, 0] = 100.0  # earlier flows are ignored
    np.testing.assert_allclose(flow_magnitude_object_scores(flows, chunk=1), [0.0, 5.0])
