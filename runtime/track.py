"""Face tracking: the landmarks of frame t give the crop of frame t+1.

Detection is the expensive, jumpy part of the pipeline; landmarks are precise and come
for free. So once a face has landmarks, its next crop box is their bounding box
(`runtime.preprocess.box_from_landmarks`, the same box convention training crops from),
and the detector runs only when

- there is no track yet,
- a track is lost: its new landmarks are implausible for a face in that crop (a
  confidence proxy: a landmark model that sees no face yields a collapsed, shifted or
  distorted point cloud), or
- every `detect_every` frames (K), to find new faces (up to `max_faces`), to confirm tracks
  (a track several runs in a row do not see is dropped) and to re-anchor a track that drifted
  from its face (a biased model can walk the box away one frame at a time). These periodic
  runs happen on a background thread (a Haar pass costs several model inferences) and are
  merged `detect_lag` frames later, so the per-frame path never waits for the detector.

A single detector miss never ends a healthy track (detectors blink; landmarks do not). A full-frame
detector also misses real faces it could see up close (profile, rolled, low contrast), so when a
detector run does not see a track and the detector has a `confirm(frame, box, roll)` method
(`HaarDetector`), the run also asks it about that track's own box, turned upright by the roll of
its landmarks: a track confirmed there counts as seen. Only tracks that neither sees
`max_unconfirmed` runs in a row are dropped (ghosts on background, or a face the detector cannot see
at all). Detections of the detector's fallback passes (`Detection.kind` "profile", "rotated":
rougher boxes, more false hits) confirm a track but move it only when `confirm` does not see its
face in the track's box, and do not displace a track; frontal detections do as before. A detection
inside a healthy track and much smaller than its landmark box (`FaceTracker.partial_hit`: part of a
turned face) confirms the track and changes nothing else.
"""
import itertools
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Set, Tuple

import numpy as np

from runtime.detect import Box, Detection, Detector, iou
from runtime.preprocess import box_from_landmarks
from runtime.smoothing import OneEuroFilter, SmoothConfig


@dataclass(frozen=True)
class TrackConfig:
    max_faces: int = 1
    detect_every: int = 30  # K: also detect every K frames while tracking (0: only when lost)
    match_iou: float = 0.3  # a detection continues a track when their boxes overlap this much
    reanchor_iou: float = 0.6  # ... and replaces the track's box when they overlap less than this
    min_face_px: float = 16.0  # landmark boxes smaller than this (either side) are not faces
    max_aspect: float = 2.5  # landmark box h/w (and w/h) limit
    min_rel_size: float = 0.45  # landmark box size relative to a detector box it was cropped from
    max_rel_size: float = 1.8
    max_track_step: float = 1.25  # ... and to the previous landmark box: faces do not jump in size
    max_rel_shift: float = 0.4  # centre shift relative to that box's size
    min_inside: float = 0.5  # fraction of landmarks that must lie inside the frame
    max_unconfirmed: int = 3  # drop a track that this many detector runs in a row did not see (0: never)
    # the tracked box may be at most this factor larger/smaller than the last detector box of its face
    # (0: no limit): a model biased towards bigger or smaller faces cannot inflate or shrink the box
    # frame after frame; the next detector run re-anchors the size
    size_anchor: float = 1.35
    background_detect: bool = True  # periodic runs (healthy tracks) on a worker thread, off the hot path
    # merge a background result exactly this many frames after its frame (waiting if needed, so
    # files stay deterministic); None = as soon as it is ready (live cameras)
    detect_lag: Optional[int] = 4


class Track:
    """One face followed over frames."""

    _ids = itertools.count(1)

    def __init__(self, box: Box, frame_index: int, smooth: SmoothConfig) -> None:
        self.id = next(Track._ids)
        self.box = box  # box to crop from on the next frame
        self.source = "detect"  # where `box` came from: "detect" or "track"
        self.lost = False
        self.plausible = True
        self.reason = ""  # why the last landmarks were judged implausible
        self.born = frame_index
        self.updates = 0
        self.unconfirmed = 0  # detector runs in a row that did not see this track
        self.ref_size = _side(box)  # size of the last detector box of this face
        self.landmarks = None  # type: Optional[np.ndarray]  # raw, frame pixels
        self.smoothed = None  # type: Optional[np.ndarray]
        self._filter = OneEuroFilter(smooth) if smooth.enabled else None

    def smooth(self, landmarks: np.ndarray, t: float) -> np.ndarray:
        self.smoothed = self._filter(landmarks, t) if self._filter is not None else landmarks
        return self.smoothed


def _side(box: Sequence[float]) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def _centre_inside(inner: Sequence[float], outer: Sequence[float]) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2.0, (inner[1] + inner[3]) / 2.0
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def anchor_size(box: Box, ref: float, factor: float) -> Box:
    """Scale `box` about its centre so its longer side is within [ref / factor, ref * factor]."""
    side = _side(box)
    if factor <= 0 or ref <= 0 or side <= 0 or ref / factor <= side <= ref * factor:
        return box
    k = min(max(side, ref / factor), ref * factor) / side
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    hw, hh = (box[2] - box[0]) * k / 2.0, (box[3] - box[1]) * k / 2.0
    return cx - hw, cy - hh, cx + hw, cy + hh


def roll_degrees(points: Optional[np.ndarray]) -> float:
    """In-plane rotation of a face from its (98, 2) landmarks: the angle of the line from the
    centre of eye points 60-67 to that of 68-75, in degrees, image y down (positive: clockwise).
    0 for other layouts or no landmarks."""
    if points is None or len(points) != 98 or not np.all(np.isfinite(points)):
        return 0.0
    a, b = points[60:68].mean(0), points[68:76].mean(0)
    return float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))


#: (track id, box, roll in degrees) of a track a detector run may confirm
Roi = Tuple[int, Box, float]


def detect_and_confirm(detector: Detector, frame: np.ndarray, rois: Sequence[Roi],
                       match_iou: float) -> Tuple[List[Detection], Set[int]]:
    """Detections in the frame, and the ids of the tracks (`rois`) no frontal detection matches but
    the detector's `confirm(frame, box, roll)` (when it has one) sees a face in."""
    dets = detector(frame)
    confirm = getattr(detector, "confirm", None)
    confirmed = set()  # type: Set[int]
    if callable(confirm):
        for tid, box, roll in rois:
            seen = any(iou(box, d.box) >= match_iou for d in dets if d.kind == "frontal")
            if not seen and confirm(frame, box, roll):
                confirmed.add(tid)
    return dets, confirmed


def plausibility(points: np.ndarray, crop_box: Box, frame_shape: Tuple[int, ...],
                 config: TrackConfig, tracked: bool = False) -> str:
    """"" when (98, 2) frame-pixel landmarks look like a face in the box they were cropped
    from; otherwise the reason they do not. `tracked`: the box came from the previous frame's
    landmarks, so the size may change only by `max_track_step` (a model that is biased to
    larger or smaller faces would otherwise grow or shrink the box frame after frame)."""
    if not np.all(np.isfinite(points)):
        return "non-finite landmarks"
    x0, y0, x1, y1 = box_from_landmarks(points)
    w, h = x1 - x0, y1 - y0
    if min(w, h) < config.min_face_px:
        return "landmark box %.0fx%.0f px is degenerate" % (w, h)
    if max(w / h, h / w) > config.max_aspect:
        return "landmark box aspect %.2f is not a face" % (h / w)
    bw, bh = crop_box[2] - crop_box[0], crop_box[3] - crop_box[1]
    ref = max(bw, bh)
    rel = max(w, h) / ref
    lo, hi = (1.0 / config.max_track_step, config.max_track_step) if tracked else \
        (config.min_rel_size, config.max_rel_size)
    if not lo <= rel <= hi:
        return "landmark box is %.2fx the crop box" % rel
    shift = np.hypot((x0 + x1 - crop_box[0] - crop_box[2]) / 2.0, (y0 + y1 - crop_box[1] - crop_box[3]) / 2.0)
    if shift / ref > config.max_rel_shift:
        return "landmarks drifted %.2f box sizes from the crop centre" % (shift / ref)
    hgt, wid = frame_shape[:2]
    x, y = points[:, 0], points[:, 1]
    inside = np.mean((x >= 0) & (x <= wid - 1) & (y >= 0) & (y <= hgt - 1))
    if inside < config.min_inside:
        return "face left the frame (%.0f%% of landmarks inside)" % (inside * 100)
    return ""


class BackgroundDetector:
    """One worker thread running a detector on a private copy of a frame.

    The tracker submits periodic detections here and collects them later; synchronous
    detections (no track / track lost) wait for a running job first, so the detector
    object is never used by two threads at once."""

    def __init__(self, detector: Detector, match_iou: float = 0.3) -> None:
        self.detector = detector
        self.match_iou = match_iou
        self._rois = []  # type: List[Roi]
        self._buf = None  # type: Optional[np.ndarray]
        self._job = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self.index = None  # type: Optional[int]  # frame index of the pending/finished job
        self.result = None  # type: Optional[List[Detection]]
        self.confirmed = set()  # type: Set[int]
        self.error = None  # type: Optional[BaseException]
        self.seconds = 0.0  # wall time of the last job
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="flm-detect", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> bool:
        return self.index is not None

    def submit(self, frame: np.ndarray, index: int, rois: Sequence[Roi] = ()) -> None:
        """Detect in a copy of `frame`, and try to confirm the tracks `rois` it does not see."""
        self.wait()
        if self._buf is None or self._buf.shape != frame.shape:
            self._buf = np.empty_like(frame)
        np.copyto(self._buf, frame)
        self._rois = list(rois)
        self.index, self.result, self.error = index, None, None
        self.confirmed = set()
        self._done.clear()
        self._job.set()

    def ready(self) -> bool:
        return self._done.is_set()

    def wait(self) -> None:
        self._done.wait()

    def take(self) -> Tuple[int, List[Detection], Set[int]]:
        """(frame index, detections, confirmed track ids) of the finished job; re-raises a
        detector error."""
        self.wait()
        index, dets, confirmed, err = self.index, self.result or [], self.confirmed, self.error
        self.index, self.result, self.error, self.confirmed = None, None, None, set()
        if err is not None:
            raise err
        return int(index), dets, confirmed  # type: ignore[arg-type]

    def _loop(self) -> None:
        while True:
            self._job.wait()
            self._job.clear()
            if self._closed:
                return
            t0 = time.perf_counter()
            try:
                self.result, self.confirmed = detect_and_confirm(
                    self.detector, self._buf, self._rois, self.match_iou)  # type: ignore[arg-type]
            except BaseException as e:  # noqa: B902 - handed to the tracker's thread
                self.error = e
            self.seconds = time.perf_counter() - t0
            self._done.set()

    def close(self) -> None:
        self.wait()
        self._closed = True
        self._job.set()


class FaceTracker:
    """Decides per frame which boxes to crop, and learns from the landmarks found there."""

    def __init__(self, detector: Detector, config: TrackConfig = TrackConfig(),
                 smooth: SmoothConfig = SmoothConfig()) -> None:
        if config.max_faces < 1:
            raise ValueError("max_faces must be >= 1, got %r" % config.max_faces)
        self.detector = detector
        self.config = config
        self.smooth_config = smooth
        self.tracks = []  # type: List[Track]
        self.last_detect = None  # type: Optional[int]
        self.detections = 0  # detector runs so far (foreground + background)
        self.background = BackgroundDetector(detector, config.match_iou) if config.background_detect else None
        self.ran_detector = False  # whether the last plan() ran the detector in the foreground
        self.merged_background = False  # whether the last plan() merged a background result

    def needs_detection(self, index: int) -> bool:
        """Whether this frame needs the detector now: no track, or a track is lost."""
        return not self.tracks or any(t.lost for t in self.tracks)

    def periodic_due(self, index: int) -> bool:
        c = self.config
        return c.detect_every > 0 and (self.last_detect is None or index - self.last_detect >= c.detect_every)

    def plan(self, frame: np.ndarray, index: int) -> List[Track]:
        """Tracks to crop in this frame (each with `.box` set), running the detector if needed."""
        self.ran_detector = self.merged_background = False
        bg = self.background
        if bg is not None and bg.pending:
            lag = self.config.detect_lag
            if bg.ready() if lag is None else index >= bg.index + lag:  # type: ignore[operator]
                done_at, dets, confirmed = bg.take()
                self._merge(dets, done_at, confirmed)
                self.merged_background = True
        if self.needs_detection(index):
            if bg is not None and bg.pending:
                bg.take()  # stale now: a fresh foreground pass follows
            self.ran_detector = True
            self._detect_now(frame, index)
        elif self.periodic_due(index) and not (bg is not None and bg.pending):
            if bg is not None:
                bg.submit(frame, index, self._rois())
                self.last_detect = index
            else:
                self.ran_detector = True
                self._detect_now(frame, index)
        return list(self.tracks)

    def _detect_now(self, frame: np.ndarray, index: int) -> None:
        dets, confirmed = detect_and_confirm(self.detector, frame, self._rois(), self.config.match_iou)
        self._merge(dets, index, confirmed)

    def _rois(self) -> List[Roi]:
        """The healthy tracks' boxes a detector run may confirm (their faces at this frame)."""
        return [(t.id, t.box, roll_degrees(t.landmarks)) for t in self.tracks
                if not t.lost and t.source == "track" and t.landmarks is not None]

    def close(self) -> None:
        if self.background is not None:
            self.background.close()

    def partial_hit(self, track: Track, det: Detection) -> bool:
        """Whether `det` is a hit on part of `track`'s face: the track is healthy (plausible landmarks
        from its own box), the detection's centre lies in the landmark box and its size is below
        that box's by more than `size_anchor`. Why: on faces turned 20-50 degrees the frontal cascade
        also fires on a frontal-looking half of the face, a box ~0.5x the face; re-anchoring there
        locked the track onto that part of the face (the turned validation video, stop 27). A track
        that really grew beyond its face cannot get there: `size_anchor` holds it within that factor
        of its last detector box."""
        f = self.config.size_anchor
        if f <= 0 or track.lost or track.source != "track" or track.landmarks is None:
            return False
        face = box_from_landmarks(track.landmarks)
        return _centre_inside(det.box, face) and _side(det.box) * f < _side(face)

    def _merge(self, dets: List[Detection], index: int, confirmed: Set[int] = frozenset()) -> None:
        self.last_detect = index
        self.detections += 1
        free = list(dets)
        matched = []  # type: List[Track]
        unseen = []  # type: List[Track]
        close = []  # type: List[Track]  # confirmed in their own box only
        # healthy tracks pick their detection first, so a lost track cannot steal it
        for tr in sorted(self.tracks, key=lambda t: t.lost):
            best, best_iou = None, self.config.match_iou
            for d in free:
                v = iou(tr.box, d.box)
                if v >= best_iou:
                    best, best_iou = d, v
            if best is not None:
                part = best if self.partial_hit(tr, best) else None
            else:
                part = next((d for d in free if self.partial_hit(tr, d)), None)
            if part is not None:
                # a detection well inside a healthy track and much smaller than its face: a part
                # of the face (turned faces give the frontal cascade such hits); it confirms the
                # track but neither moves it nor sets its size anchor
                free.remove(part)
                tr.unconfirmed = 0
                matched.append(tr)
            elif best is not None:
                free.remove(best)
                tr.unconfirmed = 0
                # a fallback detection (profile, rotated: rougher boxes, more false hits) confirms a
                # healthy track, and moves it only when confirm() does not see a face in the track's
                # own box (it drifted); it can re-anchor a lost one
                if tr.lost or best.kind == "frontal" or tr.id not in confirmed:
                    tr.ref_size = _side(best.box)
                    if tr.lost or best_iou < self.config.reanchor_iou:  # lost or drifted: re-anchor
                        tr.box, tr.source, tr.lost = best.box, "detect", False
                matched.append(tr)
            elif not tr.lost and tr.id in confirmed:
                # the detector missed it in the frame but sees a face in the track's own box
                tr.unconfirmed = 0
                close.append(tr)
            elif not tr.lost:
                # a detector miss does not end a healthy track; many in a row do (a ghost
                # track on background that a landmark model keeps calling a face)
                tr.unconfirmed += 1
                if not self.config.max_unconfirmed or tr.unconfirmed < self.config.max_unconfirmed:
                    unseen.append(tr)
        for tr in close:
            # a frontal detection left over whose centre lies in such a track's box, or which holds
            # the track's centre, is its face with a better box (the track's box grew, shrank onto
            # part of the face or slid): re-anchor there. One that only overlaps the box's edge is
            # not (on the turned validation video such hits beside a healthy track moved it off its
            # face, stop 27)
            near = [d for d in free if d.kind == "frontal"
                    and (_centre_inside(d.box, tr.box) or _centre_inside(tr.box, d.box))]
            if near:
                best = max(near, key=lambda d: iou(tr.box, d.box))
                free.remove(best)
                tr.ref_size = _side(best.box)
                tr.box, tr.source = best.box, "detect"
            matched.append(tr)
        kept = matched
        # faces the frontal detector sees beat tracks no run sees when there is no room for both;
        # fallback detections only take the room left
        strong = [d for d in free if d.kind == "frontal"]
        for group in (strong, sorted(unseen, key=lambda t: t.born), [d for d in free if d.kind != "frontal"]):
            for item in group:
                if len(kept) >= self.config.max_faces:
                    break
                if isinstance(item, Track):
                    kept.append(item)
                elif all(iou(item.box, t.box) < self.config.match_iou for t in kept):
                    kept.append(Track(item.box, index, self.smooth_config))
        self.tracks = kept

    def reset(self) -> None:
        """Forget all faces (independent images: nothing carries over between frames)."""
        self.tracks = []

    def update(self, track: Track, landmarks: np.ndarray, crop_box: Box,
               frame_shape: Tuple[int, ...]) -> bool:
        """Record the frame-pixel landmarks found in `crop_box`; returns whether they are plausible.
        Plausible landmarks set the next crop box; implausible ones mark the track lost."""
        track.landmarks = landmarks
        track.updates += 1
        track.reason = plausibility(landmarks, crop_box, frame_shape, self.config,
                                    tracked=track.source == "track")
        track.plausible = not track.reason
        if track.plausible:
            track.box = anchor_size(box_from_landmarks(landmarks), track.ref_size, self.config.size_anchor)
            track.source = "track"
            track.lost = False
        else:
            track.lost = True
        return track.plausible

    def drop_duplicates(self) -> None:
        """Two tracks converging on one face: keep the older."""
        kept = []  # type: List[Track]
        for tr in sorted(self.tracks, key=lambda t: t.born):
            if all(iou(tr.box, k.box) < 0.5 for k in kept):
                kept.append(tr)
        self.tracks = kept
