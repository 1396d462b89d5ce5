#!/usr/bin/env python
"""A moving-face video with known landmarks, made from real annotated faces (the live pipeline's test).

Each face of a WFLW-layout list (default: the 68 human-annotated test faces of ../shared/data/faces98)
is cut out of its scene with a feathered elliptical mask around its landmark box, and shown for
`--frames-per-face` frames on a 640x480 frame over a smooth random background. One slow trajectory
runs through the whole video, like a driver's head: the face box centre wanders (sinusoids, at most
~4 px/frame), turns (±12°, < 1°/frame) and zooms (0.8-1.3 x a nominal face size of 160 px, the
landmark box's longer side). The ground-truth 98 points follow the same affine transform.

Between two faces the video cross-fades for `--fade` frames at the same pose (the next face takes
over where the previous one was, so the tracker keeps its box and must re-lock on a new face, as
when a different person sits down). Fade frames carry no ground truth ("scored": false) and are not
scored; `score_face_video.py` reports the first frames of each face separately.

    .venv/bin/python scripts/make_face_video.py --out /tmp/faces.mp4           # + /tmp/faces.mp4.json
    .venv/bin/python scripts/make_face_video.py --out /tmp/val.mp4 --split val --run models/pfld98_w1
    .venv/bin/flm-dpu run --video /tmp/faces.mp4 --no-display --jsonl /tmp/faces.jsonl --model M
    .venv/bin/python scripts/score_face_video.py --video /tmp/faces.mp4 --jsonl /tmp/faces.jsonl --model M

Ground truth (JSON, like keras_flm.synth.write_face_video's): {"video", "fps", "width", "height",
"n_frames", "seed", "motion", "faces": [{"image", "line"}], "frames": [{"index", "face" (-1 in a
fade), "scored", "landmarks" (98 x [x, y] frame pixels, null in a fade), "box" (landmark box),
"pose" [cx, cy, angle_deg, scale]}]}.
"""
import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from keras_flm.shared_tree import FACES98, data_help  # noqa: E402
from runtime.preprocess import box_from_landmarks  # noqa: E402

FOURCC = "mp4v"
TRANSITIONS = ("fade", "blank")


@dataclass(frozen=True)
class Motion:
    """The head trajectory (frames at `fps`); every motion is a sinusoid with a seeded phase."""

    width: int = 640
    height: int = 480
    fps: float = 30.0
    face_size: float = 160.0  # nominal longer side of the landmark box, px
    scale_min: float = 0.8
    scale_max: float = 1.3
    amp_x: float = 150.0  # px around the frame centre
    amp_y: float = 50.0
    max_angle: float = 12.0  # degrees of in-plane rotation
    period_x: float = 240.0  # frames
    period_y: float = 170.0
    period_angle: float = 130.0
    period_scale: float = 200.0
    frames_per_face: int = 48
    fade: int = 8  # transition frames between two faces
    transition: str = "fade"  # "fade": cross-fade at the same pose; "blank": background only


@dataclass(frozen=True)
class Face:
    """A face to show: its scene (BGR) and 98 landmarks there (pixel centres at integers)."""

    image: np.ndarray
    landmarks: np.ndarray
    name: str = ""


def pose_at(t: float, m: Motion, phases: Sequence[float]) -> Tuple[float, float, float, float]:
    """(centre x, centre y, angle in degrees, scale) of the face box at frame t."""
    two_pi = 2.0 * math.pi
    cx = m.width / 2.0 + m.amp_x * math.sin(two_pi * t / m.period_x + phases[0])
    cy = m.height / 2.0 + m.amp_y * math.sin(two_pi * t / m.period_y + phases[1])
    angle = m.max_angle * math.sin(two_pi * t / m.period_angle + phases[2])
    mid, half = (m.scale_max + m.scale_min) / 2.0, (m.scale_max - m.scale_min) / 2.0
    return cx, cy, angle, mid + half * math.sin(two_pi * t / m.period_scale + phases[3])


def face_affine(landmarks: np.ndarray, pose: Sequence[float], face_size: float) -> np.ndarray:
    """2x3 affine scene -> frame: the landmark box centre goes to the pose's centre, the box's
    longer side becomes face_size * scale, rotated by the pose's angle (OpenCV's sign)."""
    x0, y0, x1, y1 = box_from_landmarks(landmarks)
    cx, cy, angle, scale = pose
    k = face_size * scale / max(x1 - x0, y1 - y0)
    src = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    m = cv2.getRotationMatrix2D(src, float(angle), float(k))
    m[:, 2] += (cx - src[0], cy - src[1])
    return m


def apply_affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def face_mask(shape: Tuple[int, ...], landmarks: np.ndarray, rx: float = 0.75, ry: float = 0.9,
              lift: float = 0.12, feather: float = 0.08) -> np.ndarray:
    """float32 (H, W) alpha in [0, 1] of a scene: an ellipse around the landmark box (semi-axes rx and
    ry times its longer side, centre raised by `lift` of it to take in the forehead), edges
    feathered by a Gaussian of sigma `feather` times the side."""
    x0, y0, x1, y1 = box_from_landmarks(landmarks)
    side = max(x1 - x0, y1 - y0)
    mask = np.zeros(shape[:2], np.float32)
    centre = (int(round((x0 + x1) / 2.0)), int(round((y0 + y1) / 2.0 - lift * side)))
    cv2.ellipse(mask, centre, (int(round(rx * side)), int(round(ry * side))), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    sigma = max(0.5, feather * side)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def shrink(face: Face, largest: float) -> Face:
    """The face with its scene downscaled (INTER_AREA) so its landmark box side is at most `largest`
    px: warping a big face down by a large factor with bilinear sampling would alias."""
    x0, y0, x1, y1 = box_from_landmarks(face.landmarks)
    f = largest / max(x1 - x0, y1 - y0)
    if f >= 1.0:
        return face
    h, w = face.image.shape[:2]
    size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
    img = cv2.resize(face.image, size, interpolation=cv2.INTER_AREA)
    fx, fy = size[0] / float(w), size[1] / float(h)
    lm = (np.asarray(face.landmarks, np.float64) + 0.5) * (fx, fy) - 0.5  # pixel centres at integers
    return Face(img, lm.astype(np.float32), face.name)


def background(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth, low-contrast random BGR background (nothing a face detector would fire on)."""
    rng = np.random.default_rng([int(seed), 11])
    small = (rng.uniform(70, 170, (6, 8, 1)) + rng.uniform(-15, 15, (6, 8, 3))).astype(np.float32)
    bg = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(cv2.GaussianBlur(bg, (0, 0), 25), 0, 255).astype(np.float32)


Layer = Tuple[np.ndarray, np.ndarray, np.ndarray, float]


def composite(bg: np.ndarray, layers: Sequence[Layer]) -> np.ndarray:
    """uint8 frame: each (scene, mask, affine, weight) warped onto the float background in turn."""
    h, w = bg.shape[:2]
    out = bg.copy()
    for image, mask, m, weight in layers:
        img = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        a = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        a = (a * float(weight))[..., None]
        out = out * (1.0 - a) + img.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def schedule(n_faces: int, m: Motion) -> List[Tuple[int, int, float]]:
    """Per frame (face, next face or -1, weight of the next face): `frames_per_face` frames of
    each face, then `fade` frames cross-fading into the next (none after the last)."""
    plan = []  # type: List[Tuple[int, int, float]]
    for k in range(n_faces):
        plan += [(k, -1, 0.0)] * m.frames_per_face
        if k + 1 < n_faces:
            plan += [(k, k + 1, (j + 1.0) / (m.fade + 1.0)) for j in range(m.fade)]
    return plan


def _round(a: np.ndarray) -> List[Any]:
    return np.round(np.asarray(a, np.float64), 2).tolist()


def make_video(faces: Sequence[Face], path: str, truth_path: Optional[str] = None, motion: Motion = Motion(),
               seed: int = 0, progress: bool = False) -> Dict[str, Any]:
    """Write the video (mp4v) and its ground truth JSON (default path + ".json"); return the truth."""
    if not faces:
        raise ValueError("no faces to show")
    if motion.frames_per_face < 1 or motion.fade < 0:
        raise ValueError("frames_per_face must be >= 1 and fade >= 0")
    if motion.transition not in TRANSITIONS:
        raise ValueError("transition must be one of %s, got %r" % (", ".join(TRANSITIONS), motion.transition))
    truth_path = truth_path or path + ".json"
    m = motion
    phases = np.random.default_rng([int(seed), 5]).uniform(0, 2 * math.pi, 4)
    bg = background(m.width, m.height, seed)
    largest = m.face_size * m.scale_max * 1.25
    cache = {}  # type: Dict[int, Tuple[Face, np.ndarray]]

    def layer(k: int) -> Tuple[Face, np.ndarray]:
        if k not in cache:
            for old in [j for j in cache if j < k - 1]:
                del cache[old]
            f = shrink(faces[k], largest)
            cache[k] = (f, face_mask(f.image.shape, f.landmarks))
        return cache[k]

    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.partial%s" % os.path.splitext(os.path.basename(path)))
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*FOURCC), float(m.fps), (m.width, m.height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write %s with codec %s" % (path, FOURCC))
    plan = schedule(len(faces), m)
    frames = []  # type: List[Dict[str, Any]]
    try:
        for t, (k, nxt, a) in enumerate(plan):
            pose = pose_at(t, m, phases)
            f, mask = layer(k)
            aff = face_affine(f.landmarks, pose, m.face_size)
            layers = [(f.image, mask, aff, 1.0 - a)] if nxt < 0 or m.transition == "fade" else []
            if nxt >= 0 and m.transition == "fade":
                g, gmask = layer(nxt)
                layers.append((g.image, gmask, face_affine(g.landmarks, pose, m.face_size), a))
            writer.write(composite(bg, layers))
            rec = {"index": t, "face": k if nxt < 0 else -1, "scored": nxt < 0, "landmarks": None,
                   "box": None, "pose": [round(float(v), 3) for v in pose]}
            if nxt < 0:
                lm = apply_affine(f.landmarks, aff)
                rec.update(landmarks=_round(lm), box=_round(box_from_landmarks(lm)))
            frames.append(rec)
            if progress and (t + 1) % 500 == 0:
                print("%d/%d frames" % (t + 1, len(plan)), file=sys.stderr)
    except BaseException:
        writer.release()
        os.remove(tmp)
        raise
    writer.release()
    truth = {"video": os.path.basename(path), "fps": float(m.fps), "width": m.width, "height": m.height,
             "n_frames": len(frames), "seed": int(seed), "motion": asdict(m),
             "faces": [{"image": f.name} for f in faces], "landmarks": "WFLW-98, frame pixels",
             "frames": frames}
    with open(truth_path + ".partial", "w") as fh:
        json.dump(truth, fh, separators=(",", ":"))
    os.replace(tmp, path)
    os.replace(truth_path + ".partial", truth_path)
    return truth


def load_faces(data: str, split: str = "test", limit: Optional[int] = None, run: Optional[str] = None
               ) -> List[Face]:
    """The annotated faces of a WFLW-layout list, in list order (their scenes read once each);
    split "val": the validation faces of the training run or release `run`, the video to make
    tracker choices on (the test video reports them)."""
    from keras_flm.evaluate import split_faces
    from runtime.wflw import load_image

    records = split_faces(data, split, run)[:limit]
    scenes = {}  # type: Dict[str, np.ndarray]
    out = []
    for r in records:
        if r.image_path not in scenes:
            scenes[r.image_path] = load_image(r)
        name = "%s:%d" % (r.rel_path, r.line)
        out.append(Face(scenes[r.image_path], np.asarray(r.landmarks, np.float32), name))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    d = Motion()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="video to write (.mp4)")
    ap.add_argument("--truth", default=None, help="ground truth JSON (default: OUT.json)")
    ap.add_argument("--data", default=FACES98, help=data_help())
    ap.add_argument("--split", choices=["test", "train", "val"], default="test",
                    help="val: the validation faces of --run (rebuilt from its config.json)")
    ap.add_argument("--run", default=None, help="run or release whose validation faces --split val uses")
    ap.add_argument("--limit", type=int, default=None, help="only the first N faces")
    ap.add_argument("--frames-per-face", type=int, default=d.frames_per_face)
    ap.add_argument("--fade", type=int, default=d.fade, help="transition frames between faces (not scored)")
    ap.add_argument("--transition", choices=TRANSITIONS, default=d.transition,
                    help="fade: the next face cross-fades in at the same pose (the track carries over); "
                         "blank: background only (the tracker must lose the face and detect the next)")
    ap.add_argument("--face-size", type=float, default=d.face_size, help="nominal landmark box side, px")
    ap.add_argument("--fps", type=float, default=d.fps)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.frames_per_face < 1 or a.fade < 0 or a.face_size < 16 or a.fps <= 0:
        ap.error("need --frames-per-face >= 1, --fade >= 0, --face-size >= 16, --fps > 0")
    if a.limit is not None and a.limit < 1:
        ap.error("--limit must be >= 1")
    from keras_flm.evaluate import EvalError

    try:
        faces = load_faces(a.data, a.split, a.limit, a.run)
    except EvalError as e:
        ap.error(str(e))
    motion = Motion(fps=a.fps, face_size=a.face_size, frames_per_face=a.frames_per_face, fade=a.fade,
                    transition=a.transition)
    truth = make_video(faces, a.out, a.truth, motion, a.seed, progress=True)
    scored = sum(1 for f in truth["frames"] if f["scored"])
    print("wrote %s (%d frames, %d faces, %d scored, %d transition) and %s" % (
        a.out, truth["n_frames"], len(faces), scored, truth["n_frames"] - scored, a.truth or a.out + ".json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
