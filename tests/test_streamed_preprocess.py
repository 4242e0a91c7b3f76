"""Pre-processing without stored flows (preprocess.store_flows: false): the same cubes as with
stored flows, also with videos in parallel processes, and resumable per video."""

import numpy as np
import pytest

import pre_process.run as run_module
from bench.standins import SHANGHAITECH_FRAME, write_shanghaitech_standin
from datasets.frames import list_videos
from pre_process import run_preprocess
from pre_process.cubes import CUBE_ARRAYS
from pre_process.run import ensure_dataset
from utils.config import load_config
from utils.io import read_json

pytestmark = pytest.mark.usefixtures("one_thread")


def config(tmp_path, cache: str, *extra):
    return load_config(
        "cfgs/synthetic.yaml",
        [
            "synthetic.num_train_videos=3",
            "synthetic.num_test_videos=1",
            "synthetic.num_frames=30",
            f"data.root={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / cache}",
            "device=cpu",
            *extra,
        ],
    )


def cubes(tmp_path, cache: str) -> dict:
    folder = tmp_path / cache / "cubes" / "training"
    return {name: np.load(folder / f"{name}.npy") for name in CUBE_ARRAYS}


def test_streamed_cubes_equal_stored_flow_cubes_serial_and_parallel(tmp_path):
    no_store = "preprocess.store_flows=false"
    run_preprocess(config(tmp_path, "stored"), splits=("training",))
    run_preprocess(config(tmp_path, "serial", no_store), splits=("training",))
    parallel = config(tmp_path, "parallel", no_store, "preprocess.num_workers=2")
    summary = run_preprocess(parallel, splits=("training",))
    reference = cubes(tmp_path, "stored")
    for cache in ("serial", "parallel"):
        got = cubes(tmp_path, cache)
        for name in CUBE_ARRAYS:
            assert np.array_equal(got[name], reference[name]), (cache, name)
        assert not (tmp_path / cache / "flows").exists()  # no flow was written
        assert not (tmp_path / cache / "cube_parts").exists()
    assert summary["splits"]["training"]["cubes"] == len(reference["boxes"])


def test_an_interrupted_run_resumes_per_video(tmp_path, monkeypatch):
    cfg = config(tmp_path, "resume", "preprocess.store_flows=false")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_join_parts", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_preprocess(cfg, splits=("training",))
    parts = sorted(p.name for p in (tmp_path / "resume" / "cube_parts" / "training").iterdir())
    assert parts == ["01", "02", "03"]
    monkeypatch.undo()
    calls = []
    original = run_module._stream_part
    monkeypatch.setattr(
        run_module, "_stream_part", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    run_preprocess(cfg, splits=("training",))
    assert calls == []  # every video's part was done: only the join ran
    assert (tmp_path / "resume" / "cubes" / "training" / "manifest.json").is_file()


def test_shanghaitech_standin_is_read_at_its_frame_size_by_its_config(tmp_path):
    """bench_disk's stand-in: videos resized to 856x480 .avi files in ShanghaiTech's layout,
    pre-processed by cfgs/shanghaitech.yaml itself (streamed flows, two workers)."""
    source = config(tmp_path, "unused")
    ensure_dataset(source.data, source.synthetic)  # writes the synthetic videos
    videos = list_videos(source.data, "training")[:2]
    root = tmp_path / "standin"
    write_shanghaitech_standin(videos, root / "shanghaitech" / "training" / "videos")
    cfg = load_config(
        "cfgs/shanghaitech.yaml",
        [f"data.root={root}", f"data.cache_dir={tmp_path / 'sh_cache'}", "device=cpu"],
    )
    summary = run_preprocess(cfg, splits=(cfg.data.train_split,))
    manifest = read_json(tmp_path / "sh_cache" / "cubes" / "training" / "videos" / "manifest.json")
    assert tuple(manifest["frame_size"]) == SHANGHAITECH_FRAME
    assert manifest["videos"] == [v.name for v in videos]
    assert manifest["num_frames"] == [v.num_frames for v in videos]
    assert summary["splits"][cfg.data.train_split]["cubes"] > 0
    assert not (tmp_path / "sh_cache" / "flows").exists()  # streamed: no flows on disk


def test_border_completion_is_the_same_offline_and_streamed(tmp_path):
    """preprocess.cubes.border_aspect changes the cubes of objects cut by the image border
    only, and the streamed path (detect.py, live.py) cuts them exactly as the offline one."""
    aspect = "preprocess.cubes.border_aspect=0.7"
    run_preprocess(config(tmp_path, "plain"), splits=("training",))
    run_preprocess(config(tmp_path, "stored", aspect), splits=("training",))
    streamed = config(tmp_path, "streamed", aspect, "preprocess.store_flows=false")
    run_preprocess(streamed, splits=("training",))
    plain, completed = cubes(tmp_path, "plain"), cubes(tmp_path, "stored")
    for name in CUBE_ARRAYS:
        assert np.array_equal(cubes(tmp_path, "streamed")[name], completed[name]), name
    np.testing.assert_array_equal(completed["boxes"], plain["boxes"])  # boxes as detected
    changed = (completed["frames"] != plain["frames"]).any(axis=(1, 2, 3, 4))
    boxes, (height, width) = plain["boxes"], (120, 160)
    narrow_at_side = ((boxes[:, 0] <= 1) | (boxes[:, 2] >= width - 1)) & (
        boxes[:, 2] - boxes[:, 0] < 0.7 * (boxes[:, 3] - boxes[:, 1])
    )
    assert narrow_at_side.any()  # the synthetic objects enter and leave at the sides
    assert not changed[~narrow_at_side & (boxes[:, 1] > 1) & (boxes[:, 3] < height - 1)].any()
    assert changed[narrow_at_side].all()
