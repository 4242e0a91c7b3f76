"""Stand-ins for data sets that cannot be obtained here, made from data that can."""

from __future__ import annotations

from pathlib import Path

import cv2

from datasets.frames import Video

SHANGHAITECH_FRAME = (480, 856)  # (H, W) of ShanghaiTech Campus


def write_shanghaitech_standin(videos: list[Video], folder: Path) -> None:
    """Each video resized to ShanghaiTech's frame size, as <folder>/<name>.avi (MJPG)."""
    folder.mkdir(parents=True)
    height, width = SHANGHAITECH_FRAME
    for video in videos:
        path = folder / f"{video.name}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (width, height))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write MJPG to {path}")
        for frame in video.frames():
            resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
            writer.write(cv2.cvtColor(resized, cv2.COLOR_RGB2BGR))
        writer.release()
