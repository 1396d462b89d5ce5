"""How a landmark model behaves under tracking: re-crop stability and scoring a tracked video.

The live pipeline (`runtime.track`) crops frame t+1 from the bounding box of frame t's
landmarks, so a model is used as a map "box -> landmarks -> box". Two measurements:

1. **Re-crop stability** (`recrop_study`): crop each annotated face at its true box (the
   ground-truth landmarks' box, the WFLW/PFLD protocol) = the one-shot prediction; then crop
   again from the model's *own* landmarks `iterations` times, scoring NME after each. A model
   that is a stable fixed point keeps its one-shot NME; a biased one walks the box away (the
   NME grows with every step). The same chains also start from boxes jittered by a fraction
   of the face size (`jitter_box`): does the model pull a bad box back to the face, and to the
   same landmarks as from the true box?
2. **Tracking on a video with known landmarks** (`score_video`): the JSONL that `flm-dpu run
   --jsonl` writes, matched frame by frame to ground truth: share of frames with the face
   found, NME per frame, and jitter (frame-to-frame landmark motion minus the true motion),
   against a one-shot reference (`reference_predictions`: the same model on the same decoded
   frames, cropped at the true boxes).

Every crop is `runtime.preprocess.crop_face`, every error `runtime.metrics`: the numbers are
comparable with `flm-dpu eval`. numpy + OpenCV only, Python 3.8 syntax.
"""
import json
import math
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from runtime import metrics
from runtime.evaluate import face_box, load_image
from runtime.json_files import read_json
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC, CropSpec, box_from_landmarks, crop_face, to_frame, validate_box
from runtime.track import iou

Box = Tuple[float, float, float, float]

#: Iterations shown in the re-crop table (those beyond the study's count are left out).
TABLE_ITERATIONS = (0, 1, 2, 3, 5, 10)
#: Targets of issue 10: NME after the re-crops at most this much above one-shot; faces found in at least
#: this share of the video frames; tracked NME at most this factor of the one-shot NME on the same frames.
MAX_RECROP_INCREASE = 0.10
MIN_FOUND_SHARE = 0.95
MAX_TRACKED_RATIO = 1.10
#: A reported face counts as the true face when its landmark box overlaps the true box this much
#: (the tracker's own match threshold, `TrackConfig.match_iou`).
FOUND_IOU = 0.3
#: A re-crop chain from a jittered box has rejoined the true-box chain when its last landmarks are within
#: this distance (inter-ocular units, half WFLW's failure threshold) of that chain's.
REJOIN_GAP = 0.05
JITTER_MODES = ("uniform", "exact")
#: Relative changes divide by at least this NME (0.01 % of the inter-ocular distance), so a perfect
#: model's float noise is not read as a relative change.
NME_FLOOR = 1e-4


# --------------------------------------------------------------------------- crops -> landmarks
def infer_boxes(backend: Any, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[float]],
                spec: Optional[CropSpec] = None, batch_size: int = 32) -> np.ndarray:
    """Landmarks (N, 98, 2) in frame pixels of face i cropped from frames[i] at boxes[i].

    Batches of `batch_size` (a fixed-batch engine such as VART gets full, zero-padded batches)."""
    if len(frames) != len(boxes):
        raise ValueError("%d frames but %d boxes" % (len(frames), len(boxes)))
    spec = spec or getattr(backend, "spec", DEFAULT_SPEC)
    fixed = backend.batch_size
    bsz = int(fixed or batch_size)
    if bsz < 1:
        raise ValueError("batch_size must be >= 1, got %r" % (bsz,))
    n = len(boxes)
    out = np.empty((n, NUM_POINTS, 2), np.float32)
    buf = np.zeros((bsz, spec.size, spec.size), np.uint8)
    for start in range(0, n, bsz):
        count = min(bsz, n - start)
        affines = [crop_face(frames[start + i], boxes[start + i], spec, out=buf[i])[1] for i in range(count)]
        if fixed:
            buf[count:] = 0
        pred = np.asarray(backend.infer(buf if fixed else buf[:count]), np.float32).reshape(-1, NUM_POINTS, 2)
        for i in range(count):
            out[start + i] = to_frame(pred[i], affines[i], spec.size)
    return out


def recrop_chains(backend: Any, frame: np.ndarray, boxes: Sequence[Sequence[float]], iterations: int,
                  spec: Optional[CropSpec] = None) -> np.ndarray:
    """(iterations + 1, len(boxes), 98, 2): landmarks from each start box (step 0), then from the
    bounding box of the previous step's own landmarks (steps 1..iterations), all in one frame."""
    if iterations < 0:
        raise ValueError("iterations must be >= 0, got %r" % (iterations,))
    frames = [frame] * len(boxes)
    steps = [infer_boxes(backend, frames, [validate_box(b) for b in boxes], spec, batch_size=len(boxes))]
    for _ in range(iterations):
        steps.append(infer_boxes(backend, frames, [box_from_landmarks(p) for p in steps[-1]], spec,
                                 batch_size=len(boxes)))
    return np.stack(steps)


def jitter_box(box: Sequence[float], amount: float, rng: np.random.Generator, mode: str = "uniform") -> Box:
    """`box` disturbed by up to `amount` of the face size (its longer side), aspect kept.

    "uniform": the centre moves by U(-amount, amount) * size in x and in y independently and the
    box is scaled by 1 + U(-amount, amount) (a detector-like spread). "exact": every draw is a
    full-size disturbance: the centre moves by exactly amount * size in a random direction and the
    box is scaled by 1 + amount or 1 - amount (random sign)."""
    x0, y0, x1, y1 = validate_box(box)
    if not 0 <= amount < 1:
        raise ValueError("jitter amount must be in [0, 1), got %r" % (amount,))
    size = max(x1 - x0, y1 - y0)
    if mode == "uniform":
        dx, dy = rng.uniform(-amount, amount, 2) * size
        k = 1.0 + rng.uniform(-amount, amount)
    elif mode == "exact":
        angle = rng.uniform(0.0, 2.0 * math.pi)
        dx, dy = amount * size * math.cos(angle), amount * size * math.sin(angle)
        k = 1.0 + amount * (1.0 if rng.random() < 0.5 else -1.0)
    else:
        raise ValueError("jitter mode must be one of %s, got %r" % (", ".join(JITTER_MODES), mode))
    cx, cy = (x0 + x1) / 2.0 + dx, (y0 + y1) / 2.0 + dy
    hw, hh = (x1 - x0) * k / 2.0, (y1 - y0) * k / 2.0
    return cx - hw, cy - hh, cx + hw, cy + hh


def normalised_distance(a: np.ndarray, b: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Mean point distance between landmark sets a and b (..., 98, 2), divided by the inter-ocular
    distance of `gt` (broadcast over a's leading axes): NME of a against b on gt's scale."""
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1).mean(axis=-1)
    return d / metrics.normaliser(gt)


def parse_jitters(text: Optional[str]) -> List[float]:
    """"0.1,0.2" -> [0.1, 0.2] (fractions of the face size; "" or None: none)."""
    out = []  # type: List[float]
    for part in (text or "").split(","):
        if not part.strip():
            continue
        try:
            a = float(part)
        except ValueError:
            raise ValueError("jitter %r is not a number (give fractions of the face size, e.g. 0.1,0.2)"
                             % part.strip()) from None
        if not 0 <= a < 1:
            raise ValueError("jitter %g must be in [0, 1) (a fraction of the face size)" % a)
        out.append(a)
    return out


def load_model(model: str, foreign_spec: Optional[str] = None, backend: Optional[str] = None,
               threads: Optional[int] = None, mirror: bool = False) -> Any:
    """A backend for an flm model (bundle, .onnx, .tflite, .h5, .xmodel) or, with `foreign_spec`, a
    foreign ONNX landmark model (`runtime.backends.foreign`); `mirror`: averaged with the mirrored
    crop (`runtime.backends.mirror`)."""
    from runtime.backends import load_backend
    from runtime.backends.foreign import load_foreign

    if foreign_spec is not None:
        return load_foreign(model, foreign_spec, threads=threads, mirror=mirror)
    return load_backend(model, backend=backend, threads=threads, mirror=mirror)


# --------------------------------------------------------------------------- occlusion probe
def occlude_lower(frame: np.ndarray, box: Sequence[float], fraction: float, patch: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """A copy of `frame` whose face box has its lower `fraction` (mouth, chin, jaw) hidden by `patch`
    (texture from another image, resized), as an ellipse or a rectangle, its top edge moved by up to
    10 % of the box height and its sides by up to 15 % of the width.

    Why: the test faces that drift most under re-cropping are half hidden (a neighbour's head, a hand,
    a dark mask), and the model then puts the chin on the occluder's edge; the validation faces are
    unoccluded and drift little, so this makes the same failure measurable without the test faces."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("occlusion fraction must be in (0, 1), got %r" % (fraction,))
    x0, y0, x1, y1 = [float(v) for v in box]
    w, h = x1 - x0, y1 - y0
    top = y1 - h * (fraction + rng.uniform(-0.1, 0.1))
    left, right = x0 - w * rng.uniform(0.0, 0.15), x1 + w * rng.uniform(0.0, 0.15)
    bottom = y1 + 0.15 * h
    H, W = frame.shape[:2]
    c0, r0 = int(max(0, math.floor(left))), int(max(0, math.floor(top)))
    c1, r1 = int(min(W, math.ceil(right))), int(min(H, math.ceil(bottom)))
    out = frame.copy()
    if c1 <= c0 or r1 <= r0:
        return out
    tex = cv2.resize(patch, (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
    if tex.ndim == 2 and out.ndim == 3:
        tex = cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR)
    mask = np.zeros((r1 - r0, c1 - c0), np.uint8)
    if rng.uniform() < 0.5:
        mask[:] = 1
    else:  # an ellipse whose upper half covers the band: a head or a shoulder in front of the face
        cv2.ellipse(mask, ((c1 - c0) // 2, r1 - r0), ((c1 - c0) // 2, r1 - r0), 0, 0, 360, 1, -1)
    region = out[r0:r1, c0:c1]
    region[mask > 0] = tex[mask > 0]
    return out


def occluded_frames(records: Sequence[Any], fraction: float, seed: int = 0
                    ) -> Callable[[int, Any], np.ndarray]:
    """A `frame_of` for `recrop_study`: face i's image with `occlude_lower` applied, the texture cut
    from the image of face i + 1 (cyclically) around that face's box, seeded per face."""
    def frame_of(i: int, record: Any) -> np.ndarray:
        rng = np.random.default_rng([int(seed), 7919, i])
        donor = records[(i + 1) % len(records)]
        bx0, by0, bx1, by1 = [int(round(v)) for v in face_box(donor, "landmarks")]
        img = load_image(donor)
        patch = img[max(0, by0):max(by0 + 2, by1), max(0, bx0):max(bx0 + 2, bx1)]
        if patch.size == 0:
            patch = img
        return occlude_lower(load_image(record), face_box(record, "landmarks"), fraction, patch, rng)
    return frame_of


# --------------------------------------------------------------------------- 1. re-crop study
def start_labels(jitters: Sequence[float]) -> List[str]:
    return ["true box"] + ["jitter %g%%" % (100 * a) for a in jitters]


def recrop_study(backend: Any, records: Sequence[Any], iterations: int = 10,
                 jitters: Sequence[float] = (0.1, 0.2), draws: int = 4, seed: int = 0,
                 mode: str = "uniform", spec: Optional[CropSpec] = None,
                 progress: Optional[Callable[[int], Any]] = None,
                 frame_of: Optional[Callable[[int, Any], np.ndarray]] = None) -> Dict[str, Any]:
    """Re-crop chains on annotated faces (records as `runtime.evaluate.evaluate` takes them).

    `frame_of(i, record)` gives face i's frame (default: its image; `occluded_frames` pastes an
    occluder over the lower face, a probe of the collapse seen on half-hidden test faces).

    Per face: one chain from the true box and `draws` chains from a box jittered by each amount
    in `jitters` (`jitter_box` in `mode`; seeded per face by `seed` and the face's position, so
    --limit keeps the draws).
    Returns arrays over (faces, iterations + 1, chains): "nme" against ground truth, "gap"
    (distance to the true-box chain at the same step, inter-ocular units) and "step" (motion
    since the previous step); "chain_start" maps each chain to its start label index."""
    if not len(records):
        raise ValueError("no faces to evaluate")
    if draws < 1 and len(jitters):
        raise ValueError("draws must be >= 1, got %r" % (draws,))
    if mode not in JITTER_MODES:
        raise ValueError("jitter mode must be one of %s, got %r" % (", ".join(JITTER_MODES), mode))
    chain_start = [0] + [1 + j for j in range(len(jitters)) for _ in range(draws)]
    nme, gap, step = [], [], []
    for i, r in enumerate(records):
        gt = np.asarray(r.landmarks, np.float64).reshape(NUM_POINTS, 2)
        true = face_box(r, "landmarks")
        rng = np.random.default_rng([int(seed), i])
        boxes = [true] + [jitter_box(true, a, rng, mode) for a in jitters for _ in range(draws)]
        frame = load_image(r) if frame_of is None else frame_of(i, r)
        chains = recrop_chains(backend, frame, boxes, iterations, spec)  # (I+1, C, 98, 2)
        nme.append(normalised_distance(chains, gt, gt))
        gap.append(normalised_distance(chains, chains[:, :1], gt))
        moved = normalised_distance(chains[1:], chains[:-1], gt)
        step.append(np.concatenate([np.full((1, len(boxes)), np.nan), moved]))
        if progress is not None:
            progress(1)
    return {"iterations": int(iterations), "jitters": [float(a) for a in jitters], "draws": int(draws),
            "mode": mode, "seed": int(seed), "labels": start_labels(jitters), "chain_start": chain_start,
            "nme": np.stack(nme), "gap": np.stack(gap), "step": np.stack(step)}


def summarize_study(study: Dict[str, Any], threshold: float = metrics.DEFAULT_THRESHOLD) -> Dict[str, Any]:
    """JSON-ready summary: per start box the mean NME at every step; at the last step the median
    NME, failure rate, share of chains that rejoined the true-box chain (`REJOIN_GAP`), mean gap to
    it and the last step's motion; one-shot NME and the target check of the true-box chain."""
    nme, gap, step = study["nme"], study["gap"], study["step"]
    starts = np.asarray(study["chain_start"])
    last = study["iterations"]
    one_shot = float(nme[:, 0, 0].mean())
    rows = []
    for k, label in enumerate(study["labels"]):
        cols = starts == k
        curve = nme[:, :, cols].mean(axis=(0, 2))
        final = nme[:, last, cols].ravel()
        rows.append({"start": label, "chains": int(cols.sum() * len(nme)),
                     "nme": [float(v) for v in curve], "median_nme": float(np.median(final)),
                     "failure_rate": metrics.failure_rate(final, threshold),
                     "rejoined": float(np.mean(gap[:, last, cols] <= REJOIN_GAP)),
                     "vs_one_shot": float((curve[last] - one_shot) / max(one_shot, NME_FLOOR)),
                     "gap": float(gap[:, last, cols].mean()),
                     "last_step": float(step[:, last, cols].mean()) if last else None})
    true = rows[0]
    return {"faces": int(len(nme)), "iterations": last, "jitters": study["jitters"], "draws": study["draws"],
            "mode": study["mode"], "seed": study["seed"], "rejoin_gap": REJOIN_GAP, "one_shot_nme": one_shot,
            "recrop_nme": true["nme"][last],
            "recrop_increase": true["vs_one_shot"], "target_increase": MAX_RECROP_INCREASE,
            "recrop_ok": bool(true["vs_one_shot"] <= MAX_RECROP_INCREASE), "rows": rows,
            "drifters": drifters(nme[:, 0, 0], nme[:, last, 0])}


#: faces named in the "who drifts" line of the verdict
DRIFTERS_SHOWN = 5


def drifters(one_shot: np.ndarray, after: np.ndarray, count: int = DRIFTERS_SHOWN) -> Dict[str, Any]:
    """The true-box chains whose NME grew most: a mean over 68 faces can be carried by two faces
    that collapse (a turned or half-hidden face whose box shrinks step after step) while the rest
    hold, and that calls for a different fix than a drift every face shares.
    Returns {"faces": [[index, one-shot, after], ...] (largest increase first), "share": their part of
    the summed increase (None when nothing grew), "rest_increase": the mean NME change of the other
    faces relative to their one-shot NME}."""
    up = after - one_shot
    order = [int(i) for i in np.argsort(-up, kind="stable")[:count] if up[i] > 0]
    total = float(up[up > 0].sum())
    rest = np.ones(len(up), bool)
    rest[order] = False
    base = float(one_shot[rest].mean()) if rest.any() else 0.0
    return {"faces": [[i, float(one_shot[i]), float(after[i])] for i in order],
            "share": float(up[order].sum() / total) if total > 0 else None,
            "rest_increase": (float((after[rest].mean() - base) / max(base, NME_FLOOR)) if rest.any()
                              else None)}


def _pct(v: Optional[float]) -> str:
    return "–" if v is None or not np.isfinite(v) else "%.2f" % (100.0 * v)


def study_rows(summary: Dict[str, Any]) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) of the re-crop table, numbers in %: mean NME at steps 0, 1, 2, 3, 5, 10 (as
    far as the study went, N = the last), its change against one-shot (true box, step 0), then at
    step N the median NME, FR@0.1, chains rejoined, mean gap to the true-box chain, last motion."""
    last = summary["iterations"]
    shown = [k for k in TABLE_ITERATIONS if k < last] + [last]
    header = (["start box", "chains"] + ["NME@%d %%" % k for k in shown]
              + ["@%d vs one-shot" % last, "median@%d %%" % last, "FR@0.1 %", "rejoined %",
                 "gap %", "last step %"])
    rows = [[r["start"], str(r["chains"])] + [_pct(r["nme"][k]) for k in shown]
            + ["%+.1f %%" % (100 * r["vs_one_shot"]), _pct(r["median_nme"]), _pct(r["failure_rate"]),
               _pct(r["rejoined"]), _pct(r["gap"]), _pct(r["last_step"])] for r in summary["rows"]]
    return header, rows


def recrop_verdict(summary: Dict[str, Any]) -> str:
    """The true-box chain against the re-crop target (also a release card's weakness line)."""
    s = summary
    return ("one-shot NME %.2f %% -> %.2f %% after %d re-crops (%+.1f %%; target <= +%.0f %%: %s)"
            % (100 * s["one_shot_nme"], 100 * s["recrop_nme"], s["iterations"], 100 * s["recrop_increase"],
               100 * s["target_increase"], "PASS" if s["recrop_ok"] else "FAIL"))


def study_verdict(summary: Dict[str, Any]) -> str:
    """One line: the true-box chain against the re-crop target, and where the jittered chains end."""
    s = summary
    out = recrop_verdict(s)
    for r in s["rows"][1:]:
        out += ("; %s (%s): %.2f %% -> %.2f %%, %.0f %% of chains rejoined"
                % (r["start"], s["mode"], 100 * r["nme"][0], 100 * r["nme"][-1], 100 * r["rejoined"]))
    d = s.get("drifters")
    if d and d["faces"]:
        named = ", ".join("#%d %.1f -> %.1f %%" % (i, 100 * a, 100 * b) for i, a, b in d["faces"])
        out += ("; the %d faces that drift most carry %.0f %% of the increase (%s)"
                % (len(d["faces"]), 100 * d["share"], named))
        if d["rest_increase"] is not None:
            rest = s["faces"] - len(d["faces"])
            out += ", the other %d change by %+.1f %%" % (rest, 100 * d["rest_increase"])
    return out


# --------------------------------------------------------------------------- 2. tracked video
def read_truth(path: str) -> Dict[str, Any]:
    """Ground truth of a face video (scripts/make_face_video.py, keras_flm.synth.write_face_video):
    {"fps", "width", "height", "frames": [{"index", "landmarks" (98 x [x, y]) or null, "box",
    "scored" (default: has landmarks), "face" (default 0)}]}. Returns it with arrays: "landmarks"
    (T, 98, 2), NaN where a frame has no scored face, "scored" (T,) bool, "face" (T,) int."""
    truth = read_json(path)
    frames = truth.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError("%s: no \"frames\" list of ground truth" % path)
    n = max(int(fr["index"]) for fr in frames) + 1
    lm = np.full((n, NUM_POINTS, 2), np.nan, np.float64)
    scored = np.zeros(n, bool)
    face = np.full(n, -1, np.int64)
    for fr in frames:
        i = int(fr["index"])
        if fr.get("landmarks") is not None:
            lm[i] = np.asarray(fr["landmarks"], np.float64).reshape(NUM_POINTS, 2)
            scored[i] = bool(fr.get("scored", True))
            face[i] = int(fr.get("face", 0))
    out = dict(truth)
    out.update(landmarks=lm, scored=scored, face=face)
    return out


def read_jsonl(path: str) -> Dict[int, List[Dict[str, Any]]]:
    """`flm-dpu run --jsonl` output: frame index -> the faces reported in it (dicts with "landmarks")."""
    out = {}  # type: Dict[int, List[Dict[str, Any]]]
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out[int(rec["frame"])] = list(rec.get("faces") or [])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError("%s:%d: not a flm-dpu JSONL record (%s)" % (path, n, e)) from None
    return out


def match_faces(faces_by_frame: Dict[int, List[Dict[str, Any]]], gt: np.ndarray, scored: np.ndarray,
                min_iou: float = FOUND_IOU) -> np.ndarray:
    """(T, 98, 2) landmarks of the reported face that is the true face of each scored frame: the
    plausible face whose landmark box overlaps the true landmark box most (>= min_iou); NaN where
    none is (not found)."""
    pred = np.full(gt.shape, np.nan, np.float64)
    for t in np.flatnonzero(scored):
        truth_box = box_from_landmarks(gt[t])
        best, best_iou = None, min_iou
        for face in faces_by_frame.get(int(t), []):
            if not face.get("plausible", True) or face.get("landmarks") is None:
                continue
            pts = np.asarray(face["landmarks"], np.float64).reshape(NUM_POINTS, 2)
            v = iou(box_from_landmarks(pts), truth_box)
            if v >= best_iou:
                best, best_iou = pts, v
        if best is not None:
            pred[t] = best
    return pred


def video_frames(path: str) -> Iterator[np.ndarray]:
    """Decoded frames of a video, in order (the frames `flm-dpu run --video` saw)."""
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError("cannot open video %s" % path)
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield frame
    finally:
        cap.release()


def reference_predictions(backend: Any, video: str, gt: np.ndarray, scored: np.ndarray,
                          spec: Optional[CropSpec] = None, batch_size: int = 32) -> np.ndarray:
    """One-shot landmarks (T, 98, 2) of every scored frame, cropped at its true box (the
    landmarks' box) from the decoded video frame; NaN elsewhere."""
    pred = np.full(gt.shape, np.nan, np.float64)
    frames, idx = [], []  # type: List[np.ndarray], List[int]

    def flush() -> None:
        if idx:
            boxes = [box_from_landmarks(gt[t]) for t in idx]
            pred[idx] = infer_boxes(backend, frames, boxes, spec, batch_size)
            del frames[:], idx[:]

    t = -1
    for t, frame in enumerate(video_frames(video)):
        if t < len(scored) and scored[t]:
            frames.append(frame)
            idx.append(t)
            if len(idx) >= batch_size:
                flush()
    flush()
    if t + 1 < len(scored):
        raise ValueError("%s has %d frames, the ground truth %d" % (video, t + 1, len(scored)))
    return pred


def frame_nme(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(T,) NME of each frame; NaN where the prediction or the truth is missing."""
    out = np.full(len(gt), np.nan)
    ok = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(gt).all(axis=(1, 2))
    if ok.any():
        out[ok] = metrics.nme(pred[ok], gt[ok])
    return out


def jitter(pred: np.ndarray, gt: np.ndarray, face: np.ndarray) -> np.ndarray:
    """(T,) frame-to-frame jitter: mean over points of |Δpred − Δgt| between frames t-1 and t, in
    units of the true inter-ocular distance at t; NaN unless both frames have a prediction and the
    same true face (a cut to another face is not motion)."""
    out = np.full(len(gt), np.nan)
    both = (np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(gt).all(axis=(1, 2)))
    ok = np.flatnonzero(both[1:] & both[:-1] & (face[1:] == face[:-1])) + 1
    if ok.size:
        d = (pred[ok] - pred[ok - 1]) - (gt[ok] - gt[ok - 1])
        out[ok] = np.linalg.norm(d, axis=-1).mean(axis=-1) / metrics.normaliser(gt[ok])
    return out


def _nanmean(x: np.ndarray) -> Optional[float]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def after_switch(face: np.ndarray, scored: np.ndarray, frames: int) -> np.ndarray:
    """(T,) True on the first `frames` scored frames of each face (where the tracker re-locks)."""
    out = np.zeros(len(face), bool)
    seen = {}  # type: Dict[int, int]
    for t in np.flatnonzero(scored):
        k = seen.get(int(face[t]), 0)
        out[t] = k < frames
        seen[int(face[t])] = k + 1
    return out


def score_video(truth: Dict[str, Any], faces_by_frame: Dict[int, List[Dict[str, Any]]],
                reference: Optional[np.ndarray] = None, settle: int = 10,
                min_iou: float = FOUND_IOU) -> Dict[str, Any]:
    """Found share, NME and jitter of tracked landmarks against ground truth (`read_truth`),
    and of the one-shot `reference` (`reference_predictions`) when given. NME and jitter are
    means over the frames where the face was found; "settle" splits the NME into the first
    `settle` scored frames of each face and the rest; "lost_faces" lists the faces found in
    fewer than half of their frames."""
    gt, scored, face = truth["landmarks"], truth["scored"], truth["face"]
    n = int(scored.sum())
    if not n:
        raise ValueError("the ground truth has no scored frames")
    pred = match_faces(faces_by_frame, gt, scored, min_iou)
    found = np.isfinite(pred).all(axis=(1, 2)) & scored
    nmes = frame_nme(pred, gt)
    early = after_switch(face, scored, settle)
    ids = sorted(set(face[scored].tolist()))
    share = {k: float(found[face == k].sum()) / max(1, int((scored & (face == k)).sum())) for k in ids}
    out = {"frames": int(len(gt)), "scored_frames": n, "unscored_frames": int(len(gt) - n),
           "faces": len(ids), "found_frames": int(found.sum()),
           "lost_faces": [int(k) for k in ids if share[k] < 0.5],
           "found_share": float(found.sum()) / n, "nme": _nanmean(nmes),
           "nme_first_%d" % settle: _nanmean(nmes[early]), "nme_after_%d" % settle: _nanmean(nmes[~early]),
           "failure_rate": metrics.failure_rate(nmes[found]) if found.any() else None,
           "jitter": _nanmean(jitter(pred, gt, face)), "settle": int(settle),
           "false_faces": int(sum(1 for t, fs in faces_by_frame.items()
                                  if 0 <= t < len(scored) and not scored[t] and fs)),
           "target_found_share": MIN_FOUND_SHARE, "target_ratio": MAX_TRACKED_RATIO}
    if reference is not None:
        ref_nmes = frame_nme(reference, gt)
        out.update(reference_nme=_nanmean(ref_nmes), reference_nme_found=_nanmean(ref_nmes[found]),
                   reference_jitter=_nanmean(jitter(reference, gt, face)))
        if out["nme"] is not None and out["reference_nme_found"]:
            out["ratio"] = out["nme"] / out["reference_nme_found"]
    return out


def video_rows(scores: Dict[str, Dict[str, Any]]) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) of the video table, in %: one row per named run, then the one-shot reference
    of the first run that has one: on the frames that run found (the ratio's denominator) and on
    all scored frames (the frames a tracker loses are the hard ones, so these differ)."""
    if not scores:
        raise ValueError("no scores to tabulate")
    settle = next(iter(scores.values()))["settle"]
    header = ["run", "frames scored", "found %", "NME %", "NME first %d frames %%" % settle, "NME after %",
              "FR@0.1 %", "jitter % IOD", "NME / one-shot"]
    rows = []  # type: List[List[str]]
    for name, s in scores.items():
        ratio = s.get("ratio")
        rows.append([name, str(s["scored_frames"]), _pct(s["found_share"]), _pct(s["nme"]),
                     _pct(s.get("nme_first_%d" % settle)), _pct(s.get("nme_after_%d" % settle)),
                     _pct(s["failure_rate"]), _pct(s["jitter"]), "–" if ratio is None else "%.3f" % ratio])
    refs = [s for s in scores.values() if s.get("reference_nme") is not None]
    if refs:
        s = refs[0]
        rows.append(["one-shot, true box (frames the run found)", str(s["found_frames"]), "–",
                     _pct(s["reference_nme_found"]), "–", "–", "–", "–", "1.000"])
        rows.append(["one-shot, true box (all scored frames)", str(s["scored_frames"]), "–",
                     _pct(s["reference_nme"]), "–", "–", "–", _pct(s["reference_jitter"]), "–"])
    return header, rows


def video_verdict(name: str, s: Dict[str, Any]) -> str:
    """One line per run: found share and NME ratio against their targets, jitter against one-shot."""
    out = "%s: face found in %.1f %% of scored frames (target >= %.0f %%: %s)" % (
        name, 100 * s["found_share"], 100 * s["target_found_share"],
        "PASS" if s["found_share"] >= s["target_found_share"] else "FAIL")
    if s.get("ratio") is not None:
        out += "; NME %.2f %% = %.3f x one-shot %.2f %% on the same frames (target <= %.2f x: %s)" % (
            100 * s["nme"], s["ratio"], 100 * s["reference_nme_found"], s["target_ratio"],
            "PASS" if s["ratio"] <= s["target_ratio"] else "FAIL")
    elif s.get("nme") is not None:
        out += "; NME %.2f %% (no one-shot reference: pass --model)" % (100 * s["nme"])
    if s.get("jitter") is not None:
        out += "; jitter %.2f %% IOD" % (100 * s["jitter"])
        if s.get("reference_jitter") is not None:
            out += " (one-shot %.2f %%)" % (100 * s["reference_jitter"])
    if s["lost_faces"]:
        out += "; %d face(s) found in < 50 %% of their frames: %s" % (
            len(s["lost_faces"]), ", ".join(str(k) for k in s["lost_faces"]))
    if s["false_faces"]:
        out += "; a face reported in %d unscored frames" % s["false_faces"]
    return out
