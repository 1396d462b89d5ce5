"""A synthetic face video with ground truth: one face drifting slowly, turning a little, blinking
periodically and optionally yawning. For the runtime's tests and demos (tracking, driver
monitoring: "EAR falls when the eyes close"), where a real camera is not available.

`write_face_video(path, ...)` writes an MP4 (OpenCV VideoWriter, 'mp4v') and, beside it,
`ground_truth_path(path)` = path + ".json" with per-frame landmarks (98 x 2 frame pixels), face
box, eye/mouth openness and eye_closed / mouth_open flags. `render_frame(eye_open=...)` renders a
single frame of the same face with a chosen eye and mouth openness.
"""
import json
import os
from dataclasses import replace
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from keras_flm.synth.render import EXPR_MOUTH_OPEN, FaceParams, make_background, render_face, sample_params

#: Eye openness (0 closed .. 1 open, the template's lid parameter) below which a frame counts as
#: eyes-closed in the ground truth.
EYE_CLOSED_BELOW = 0.2
VIDEO_FOURCC = "mp4v"


def ground_truth_path(video_path: str) -> str:
    """Where write_face_video puts the JSON ground truth of a video: the same name + ".json"."""
    return str(video_path) + ".json"


def _identity(seed: int, size: Tuple[int, int]) -> Tuple[FaceParams, np.ndarray]:
    """The video's face (frontal, clean, eyes open) and its fixed background."""
    rng = np.random.default_rng([int(seed), 7])
    w, h = size
    p = sample_params(rng, (w, h), face_fraction=(0.16, 0.19), frontal=True, expression=False,
                      illumination=False, occlusion=False, blur=False, makeup=False)
    p.shape.eye_open_right = p.shape.eye_open_left = 1.0
    p.shape.mouth_open, p.shape.smile, p.shape.brow_raise = 0.03, 0.1, 0.0
    p.center = (0.5 * w, 0.52 * h)
    p.background = dict(p.background, clutter=min(3, int(p.background.get("clutter", 0))))
    bg = np.clip(make_background(p.background, w, h, p.seed), 0, 255).astype(np.uint8)
    return p, bg


def _blink_profile(j: int, frames: int) -> float:
    """Eye openness during a blink of `frames` frames: close, stay shut, reopen."""
    if frames <= 2:
        return 0.0
    ramp = max(1, frames // 3)
    if j < ramp:
        return 1.0 - (j + 1) / (ramp + 1.0)
    if j >= frames - ramp:
        return (j - (frames - ramp) + 1) / (ramp + 1.0)
    return 0.0


def schedule(n_frames: int, fps: float, blink_every: Optional[int], blink_frames: int,
             yawn_at: Iterable[int], yawn_frames: int, seed: int) -> List[Dict[str, float]]:
    """Per-frame pose, position offset, eye and mouth openness of the video (no pixels)."""
    rng = np.random.default_rng([int(seed), 8])
    ph = rng.uniform(0, 2 * np.pi, 6)
    fr = rng.uniform(0.05, 0.12, 6)  # Hz: slow drift
    yawns = sorted(int(y) for y in yawn_at)
    out = []
    for i in range(n_frames):
        t = i / float(fps)
        eye = 1.0
        if blink_every:
            first = blink_every // 2
            if i >= first:
                j = (i - first) % blink_every
                if j < blink_frames:
                    eye = _blink_profile(j, blink_frames)
        mouth = 0.03
        for y0 in yawns:
            if y0 <= i < y0 + yawn_frames:
                mouth = max(mouth, float(np.sin(np.pi * (i - y0 + 0.5) / yawn_frames)) ** 0.7)
        s = np.sin(2 * np.pi * fr * t + ph)
        out.append({"dx": 0.08 * s[0], "dy": 0.05 * s[1], "yaw": 14.0 * s[2], "pitch": 6.0 * s[3],
                    "roll": 7.0 * s[4], "zoom": 1.0 + 0.05 * s[5], "eye": eye, "mouth": mouth})
    return out


def _frame_params(base: FaceParams, st: Dict[str, float], size: Tuple[int, int], index: int) -> FaceParams:
    w, h = size
    shape = replace(base.shape, eye_open_right=st["eye"], eye_open_left=st["eye"],
                    mouth_open=st["mouth"])
    return replace(base, shape=shape, yaw=st["yaw"], pitch=st["pitch"], roll=st["roll"],
                   center=(base.center[0] + st["dx"] * w, base.center[1] + st["dy"] * h),
                   scale=base.scale * st["zoom"], seed=base.seed + index)


def _frame_record(index: int, lm: np.ndarray, st: Dict[str, float]) -> Dict[str, Any]:
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0)
    return {"index": index, "landmarks": np.round(lm.astype(np.float64), 3).tolist(),
            "box": [round(float(v), 3) for v in (x0, y0, x1, y1)],
            "eye_openness": round(st["eye"], 4), "eye_closed": bool(st["eye"] < EYE_CLOSED_BELOW),
            "mouth_openness": round(st["mouth"], 4), "mouth_open": bool(st["mouth"] > EXPR_MOUTH_OPEN),
            "yaw": round(st["yaw"], 3), "pitch": round(st["pitch"], 3), "roll": round(st["roll"], 3)}


def render_frame(eye_open: float = 1.0, mouth_open: float = 0.03, seed: int = 0,
                 size: Tuple[int, int] = (640, 480), yaw: float = 0.0, pitch: float = 0.0,
                 roll: float = 0.0) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float, float, float]]:
    """One BGR frame of the video face of `seed` with the given eye/mouth openness (0..1) and pose.
    Returns (uint8 (h, w, 3) frame, float32 (98, 2) landmarks, landmark box)."""
    size = (int(size[0]), int(size[1]))
    base, bg = _identity(seed, size)
    st = {"dx": 0.0, "dy": 0.0, "yaw": yaw, "pitch": pitch, "roll": roll, "zoom": 1.0,
          "eye": float(eye_open), "mouth": float(mouth_open)}
    gray, lm, _ = render_face(_frame_params(base, st, size, 0), size, background=bg)
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), lm, (float(x0), float(y0), float(x1), float(y1))


def write_face_video(path: str, n_frames: int = 300, size: Tuple[int, int] = (640, 480), fps: float = 30.0,
                     seed: int = 0, blink_every: Optional[int] = 90, blink_frames: int = 7,
                     yawn_at: Union[None, int, Sequence[int]] = None, yawn_frames: int = 60,
                     progress: bool = False) -> Dict[str, Any]:
    """Write an MP4 of one synthetic face and its JSON ground truth; return the ground truth.

    The face drifts (about +-8 % of the frame), turns (yaw +-14, pitch +-6, roll +-7 degrees) and
    zooms (+-5 %) slowly; it blinks for `blink_frames` frames every `blink_every` frames (first
    blink at blink_every // 2; None = never) and yawns for `yawn_frames` frames starting at each
    frame in `yawn_at`. Ground truth (also written to ground_truth_path(path)): {"video", "fps",
    "width", "height", "n_frames", "seed", ..., "frames": [{"index", "landmarks" (98 x [x, y]),
    "box" [x0, y0, x1, y1], "eye_openness", "eye_closed", "mouth_openness", "mouth_open", "yaw",
    "pitch", "roll"}]}. Files are written under temporary names and renamed at the end.
    """
    if int(n_frames) < 1:
        raise ValueError("n_frames must be >= 1, got %r" % (n_frames,))
    w, h = int(size[0]), int(size[1])
    if w < 64 or h < 64:
        raise ValueError("video size must be at least 64x64, got %r" % (size,))
    if not fps > 0:
        raise ValueError("fps must be > 0, got %r" % (fps,))
    if blink_every is not None and blink_every <= blink_frames:
        raise ValueError("blink_every (%r) must exceed blink_frames (%r)" % (blink_every, blink_frames))
    yawns = [] if yawn_at is None else ([int(yawn_at)] if np.isscalar(yawn_at) else [int(v) for v in yawn_at])
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(path))
    tmp_video = os.path.join(folder, ".%s.partial-%d%s" % (stem, os.getpid(), ext or ".mp4"))
    gt_path = ground_truth_path(path)
    tmp_gt = gt_path + ".partial-%d" % os.getpid()

    base, bg = _identity(seed, (w, h))
    plan = schedule(int(n_frames), fps, blink_every, blink_frames, yawns, yawn_frames, seed)
    writer = cv2.VideoWriter(tmp_video, cv2.VideoWriter_fourcc(*VIDEO_FOURCC), float(fps), (w, h), True)
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write %r with codec %s (is OpenCV built with FFmpeg?)"
                           % (path, VIDEO_FOURCC))
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(plan), desc="synth video", unit="frame")
        except ImportError:
            bar = None
    frames = []
    ok = False
    try:
        for i, st in enumerate(plan):
            gray, lm, _ = render_face(_frame_params(base, st, (w, h), i), (w, h), background=bg)
            writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
            frames.append(_frame_record(i, lm, st))
            if bar is not None:
                bar.update(1)
        writer.release()
        truth = {"video": os.path.basename(path), "fps": float(fps), "width": w, "height": h,
                 "n_frames": len(frames), "seed": int(seed), "blink_every": blink_every,
                 "blink_frames": blink_frames, "yawn_at": yawns, "yawn_frames": yawn_frames,
                 "eye_closed_below": EYE_CLOSED_BELOW, "mouth_open_above": EXPR_MOUTH_OPEN,
                 "landmarks": "WFLW-98, frame pixels", "frames": frames}
        with open(tmp_gt, "w") as f:
            json.dump(truth, f)
        os.replace(tmp_video, path)
        os.replace(tmp_gt, gt_path)
        ok = True
        return dict(truth, path=path, json_path=gt_path)
    finally:
        writer.release()
        if bar is not None:
            bar.close()
        if not ok:
            for f in (tmp_video, tmp_gt):
                if os.path.exists(f):
                    os.remove(f)
