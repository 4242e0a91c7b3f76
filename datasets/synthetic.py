"""A small, deterministic synthetic surveillance dataset in the standard layout.

One fixed camera over a textured walkway. Normal videos: person-sized textured walkers (body,
legs that swing, a head) crossing the walkway horizontally, in both directions, at walking speed.
Each test video adds one anomalous object for a stretch of frames, cycling through:
- `fast`: a walker-sized object crossing at `anomaly_speed` px/frame (a cyclist);
- `large`: a wide cart-shaped object (about 3x a walker's area) at walking speed;
- `wrong_direction`: a walker crossing the walkway vertically;
- `erratic`: a walker whose velocity jumps randomly every frame.
A test frame is labelled abnormal (1) while any part of the anomalous object is in view.
`synthetic.anomalies` picks the kinds cycled through; two more are whole-scene events for the
whole-frame mode (no anomalous object at all): `flash`, the whole frame brightening by
`flash_gain` for `event_frames` frames (a light switched on), and `shake`, the camera shaking
(every frame shifted by up to `shake_pixels` px) for `event_frames` frames.

Output (PNG frames are lossless, so the data are bit-identical for a given seed):
`<folder>/training/frames/<video>/<n>.png`, `<folder>/testing/frames/<video>/<n>.png`,
`<folder>/testing/test_frame_mask/<video>.npy` (uint8, one entry per frame), and
`<folder>/synthetic.json` (the generator's settings; a different setting regenerates).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.io import atomic_folder, read_json, write_json

ANOMALY_TYPES = ("fast", "large", "wrong_direction", "erratic")
SCENE_EVENTS = ("flash", "shake")  # whole-scene anomalies: no anomalous object
SCENE_EVENT_SETTINGS = {
    "anomalies": list(ANOMALY_TYPES),
    "flash_gain": 1.6,
    "shake_pixels": 4,
    "event_frames": 20,
}
MARKER = "synthetic.json"


@dataclass
class Mover:
    """A textured sprite moving with velocity (vx, vy) px/frame; position = top-left corner."""

    sprite: np.ndarray  # [h, w, 3] uint8
    alpha: np.ndarray  # [h, w] float32 in [0, 1]
    x: float
    y: float
    vx: float
    vy: float
    legs: bool = True  # animate the legs (walkers)
    erratic: float = 0.0  # std of the random velocity jump per frame
    phase: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        return self.sprite.shape[0], self.sprite.shape[1]

    def in_view(self, height: int, width: int) -> bool:
        h, w = self.size
        return self.x + w > 0 and self.x < width and self.y + h > 0 and self.y < height


def _smooth_noise(rng, shape, sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def make_background(rng, height: int, width: int) -> np.ndarray:
    """A static scene: grass at the top, a paved walkway with tile joints below. uint8 RGB."""
    coarse = _smooth_noise(rng, (height, width), 6.0)
    fine = _smooth_noise(rng, (height, width), 0.8)
    image = np.empty((height, width, 3), np.float32)
    top = int(0.3 * height)
    grass = np.array([70, 100, 60], np.float32)
    paving = np.array([150, 150, 145], np.float32)
    image[:top] = grass
    image[top:] = paving
    image += (10 * coarse + 8 * fine)[..., None]
    tile = max(8, width // 10)
    image[top::tile, :] -= 25  # tile joints give the flow estimator texture to lock onto
    image[top:, ::tile] -= 25
    image[top - 2 : top] = 60  # kerb
    return np.clip(image, 0, 255).astype(np.uint8)


def make_walker(rng, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A person-like sprite: head, shirt, trousers, with texture. Returns (sprite, alpha)."""
    sprite = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    head = max(2, height // 6)
    cx = width // 2
    cv2.circle(alpha, (cx, head), head, 1.0, -1)
    sprite[: 2 * head + 1] = rng.uniform([150, 110, 80], [220, 170, 140])  # skin
    shirt_end = int(0.55 * height)
    alpha[2 * head : shirt_end, 1 : width - 1] = 1.0
    sprite[2 * head : shirt_end] = rng.uniform(20, 230, 3)
    alpha[shirt_end:] = 1.0  # the legs; `render` cuts the gap between them per frame
    sprite[shirt_end:] = rng.uniform(10, 110, 3)
    sprite += 12 * _smooth_noise(rng, (height, width), 0.7)[..., None]
    return np.clip(sprite, 0, 255).astype(np.uint8), alpha


def make_cart(rng, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A wide, boxy vehicle-like sprite with two dark wheels."""
    sprite = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    body_end = int(0.8 * height)
    alpha[:body_end] = 1.0
    sprite[:body_end] = rng.uniform(180, 240, 3)
    sprite[2 : body_end // 2, 3 : width - 3] = rng.uniform(40, 90, 3)  # windows
    radius = max(2, height // 6)
    for cx in (width // 4, 3 * width // 4):
        cv2.circle(alpha, (cx, height - radius - 1), radius, 1.0, -1)
        cv2.circle(sprite, (cx, height - radius - 1), radius, (20, 20, 20), -1)
    sprite += 10 * _smooth_noise(rng, (height, width), 0.7)[..., None]
    return np.clip(sprite, 0, 255).astype(np.uint8), alpha


def render(background: np.ndarray, movers: list[Mover], rng, noise: float) -> np.ndarray:
    """Composite the movers over the background (nearest pixel) plus sensor noise."""
    frame = background.astype(np.float32)
    height, width = frame.shape[:2]
    for m in sorted(movers, key=lambda m: m.y + m.size[0]):  # nearer (lower) drawn last
        h, w = m.size
        alpha = m.alpha.copy()
        if m.legs:  # two legs swinging: open a gap whose width follows the gait
            gap = int(round((w // 2 - 1) * abs(np.sin(m.phase))))
            alpha[int(0.55 * h) :, w // 2 - gap // 2 : w // 2 - gap // 2 + gap] = 0.0
        x0, y0 = int(round(m.x)), int(round(m.y))
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + w, width), min(y0 + h, height)
        if fx0 >= fx1 or fy0 >= fy1:
            continue
        sx, sy = fx0 - x0, fy0 - y0
        a = alpha[sy : sy + fy1 - fy0, sx : sx + fx1 - fx0, None]
        patch = m.sprite[sy : sy + fy1 - fy0, sx : sx + fx1 - fx0]
        frame[fy0:fy1, fx0:fx1] = a * patch + (1 - a) * frame[fy0:fy1, fx0:fx1]
    frame += rng.normal(0.0, noise, frame.shape)
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


class Scene:
    """Walkers crossing the walkway; a walker that leaves is replaced at a random edge."""

    def __init__(self, spec, rng, background: np.ndarray):
        self.spec, self.rng, self.background = spec, rng, background
        self.height, self.width = background.shape[:2]
        self.walkers = [self._new_walker(inside=True) for _ in range(spec.num_walkers)]

    def _new_walker(self, inside: bool) -> Mover:
        spec, rng = self.spec, self.rng
        w, h = (int(round(s * rng.uniform(0.85, 1.15))) for s in spec.walker_size)
        sprite, alpha = make_walker(rng, w, h)
        direction = rng.choice([-1.0, 1.0])
        speed = rng.uniform(*spec.walker_speed)
        top = int(0.3 * self.height)
        y = rng.uniform(top - 0.5 * h, self.height - h)
        if inside:
            x = rng.uniform(0, self.width - w)
        else:
            x = -w + 1.0 if direction > 0 else self.width - 1.0
        return Mover(sprite, alpha, x, y, direction * speed, 0.0, phase=rng.uniform(0, np.pi))

    def step(self, extra: list[Mover]) -> np.ndarray:
        """Render the current frame, then advance everything by one frame."""
        frame = render(self.background, self.walkers + extra, self.rng, self.spec.noise)
        for i, m in enumerate(self.walkers):
            _advance(m, self.rng)
            if not m.in_view(self.height, self.width):
                self.walkers[i] = self._new_walker(inside=False)
        for m in extra:
            _advance(m, self.rng)
        return frame


def _advance(m: Mover, rng) -> None:
    if m.erratic:
        m.vx, m.vy = rng.normal(0.0, m.erratic, 2)
    m.x += m.vx
    m.y += m.vy
    m.phase += 0.35 * np.hypot(m.vx, m.vy)


def make_anomaly(kind: str, spec, rng, height: int, width: int) -> Mover:
    """The anomalous object of a test video, entering the view at its first frame."""
    w, h = spec.walker_size
    top = int(0.3 * height)
    lane = rng.uniform(top, height - 1.5 * h)
    direction = rng.choice([-1.0, 1.0])
    if kind == "fast":
        sprite, alpha = make_walker(rng, w + 4, h)
        x = -w - 3.0 if direction > 0 else width - 1.0
        return Mover(sprite, alpha, x, lane, direction * spec.anomaly_speed, 0.0, legs=False)
    if kind == "large":
        cw, ch = int(2.8 * w), int(1.1 * h)
        sprite, alpha = make_cart(rng, cw, ch)
        x = -cw + 1.0 if direction > 0 else width - 1.0
        speed = float(np.mean(spec.walker_speed))
        return Mover(sprite, alpha, x, min(lane, height - ch), direction * speed, 0.0, legs=False)
    if kind == "wrong_direction":
        sprite, alpha = make_walker(rng, w, h)
        x = rng.uniform(0.2 * width, 0.8 * width)
        return Mover(sprite, alpha, x, top - h + 1.0, 0.0, float(np.max(spec.walker_speed)))
    if kind == "erratic":
        sprite, alpha = make_walker(rng, w, h)
        x = rng.uniform(0.3 * width, 0.7 * width - w)
        return Mover(sprite, alpha, x, lane, 0.0, 0.0, erratic=spec.erratic_jump)
    raise ValueError(f"unknown anomaly type {kind!r}; valid: {list(ANOMALY_TYPES + SCENE_EVENTS)}")


def make_video(spec, rng, background: np.ndarray, anomaly: str | None):
    """Frames [T, H, W, 3] uint8 and frame labels [T] uint8 of one video."""
    height, width = background.shape[:2]
    scene = Scene(spec, rng, background)
    start = None
    if anomaly is not None:
        start = int(rng.integers(spec.num_frames // 5, spec.num_frames // 2))
    frames, labels, extra = [], [], []
    if anomaly in SCENE_EVENTS:
        return _scene_event_video(spec, rng, scene, anomaly, start)
    for t in range(spec.num_frames):
        if t == start:
            extra = [make_anomaly(anomaly, spec, rng, height, width)]
        if extra and anomaly == "erratic" and t >= start + spec.erratic_frames:
            extra = []  # the erratic walker vanishes after its stretch (it would wander forever)
        labels.append(int(any(m.in_view(height, width) for m in extra)))
        frames.append(scene.step(extra))
    return np.stack(frames), np.array(labels, dtype=np.uint8)


def _scene_event_video(spec, rng, scene, kind: str, start: int):
    """A normal video with a whole-scene event (flash or shake) for spec.event_frames frames."""
    frames, labels = [], []
    for t in range(spec.num_frames):
        frame = scene.step([])
        event = start <= t < start + spec.event_frames
        if event and kind == "flash":
            frame = np.clip(frame.astype(np.float32) * spec.flash_gain, 0, 255).astype(np.uint8)
        elif event:  # shake: the whole view shifted by a random offset
            dx, dy = rng.integers(-spec.shake_pixels, spec.shake_pixels + 1, 2)
            shift = np.float32([[1, 0, dx], [0, 1, dy]])
            size = (frame.shape[1], frame.shape[0])
            frame = cv2.warpAffine(frame, shift, size, borderMode=cv2.BORDER_REFLECT)
        frames.append(frame)
        labels.append(int(event))
    return np.stack(frames), np.array(labels, dtype=np.uint8)


def _write_frames(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def settings_of(spec) -> dict:
    """The generator's settings; the scene-event settings only when they differ from their
    defaults (data generated before they existed stays current)."""
    settings = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    for key, default in SCENE_EVENT_SETTINGS.items():
        if settings.get(key) == default:
            settings.pop(key)
    return settings


def is_current(folder: Path, spec) -> bool:
    """True when `folder` holds a dataset generated with exactly these settings."""
    marker = Path(folder) / MARKER
    return marker.is_file() and read_json(marker) == settings_of(spec)


def generate(folder: str | Path, spec) -> dict:
    """Write the dataset to `folder` (replacing an earlier synthetic one); returns a summary.

    `spec` is the `synthetic` config section. The folder is built under a temporary name and
    renamed when complete. A non-synthetic folder (no synthetic.json) is never replaced.
    """
    folder = Path(folder)
    if folder.exists() and not (folder / MARKER).is_file():
        raise FileExistsError(f"{folder} exists and is not a synthetic dataset; not replacing it")
    with atomic_folder(folder) as tmp:
        scene_rng = np.random.default_rng([spec.seed, 0])
        background = make_background(scene_rng, spec.height, spec.width)
        abnormal_frames = 0
        for split, count, split_id in (
            ("training", spec.num_train_videos, 1),
            ("testing", spec.num_test_videos, 2),
        ):
            for v in range(count):
                rng = np.random.default_rng([spec.seed, split_id, v])
                kinds = list(spec.anomalies)
                kind = kinds[v % len(kinds)] if split == "testing" else None
                frames, labels = make_video(spec, rng, background, kind)
                name = f"{v + 1:02d}"
                _write_frames(tmp / split / "frames" / name, frames)
                if split == "testing":
                    (tmp / split / "test_frame_mask").mkdir(parents=True, exist_ok=True)
                    np.save(tmp / split / "test_frame_mask" / f"{name}.npy", labels)
                    abnormal_frames += int(labels.sum())
        write_json(tmp / MARKER, settings_of(spec))
    return {
        "folder": str(folder),
        "train_frames": spec.num_train_videos * spec.num_frames,
        "test_frames": spec.num_test_videos * spec.num_frames,
        "abnormal_test_frames": abnormal_frames,
    }
