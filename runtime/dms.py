"""Driver-monitoring analytics from the 98 landmarks: eyes, blinks, PERCLOS, yawns, head pose.

- Eye aspect ratio (Soukupova & Cech 2016) per eye, from the WFLW eye contours in the order
  `runtime.landmarks.RIGHT_EYE_EAR / LEFT_EYE_EAR`: (|p2-p6| + |p3-p5|) / (2 |p1-p4|).
- Eyes closed with hysteresis. Thresholds start absolute and, once the driver's open-eye EAR
  is known (a high percentile of the recent EAR), become relative to it: EAR depends on the
  person and on the landmark scheme, a fixed 0.2 fits few.
- Blink = a closure of blink_min_s..blink_max_s; blink rate per minute over a window.
- PERCLOS = fraction of time the eyes were closed over a sliding window (time-weighted,
  so dropped frames do not bias it).
- Mouth aspect ratio from the inner lip; a yawn = MAR above a threshold for >= yawn_min_s.
- Head pose (pitch, yaw, roll in degrees) from `runtime.headpose`; distraction = looking
  away for >= distracted_s.
- State: "asleep" (eyes closed >= microsleep_s), "drowsy" (PERCLOS or yawns over their
  limits), "distracted", else "alert".
Time comes from frame timestamps (seconds), so files and cameras behave alike.
"""
from collections import deque
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from runtime.landmarks import LEFT_EYE_EAR, MOUTH_CORNERS_INNER, MOUTH_TOP_BOTTOM_INNER, RIGHT_EYE_EAR


@dataclass(frozen=True)
class DmsConfig:
    ear_closed: float = 0.18  # absolute thresholds, used until the open-eye baseline is known
    ear_open: float = 0.22
    adaptive: bool = True
    closed_ratio: float = 0.6  # closed when EAR < closed_ratio * baseline ...
    open_ratio: float = 0.75  # ... open again when EAR > open_ratio * baseline
    baseline_percentile: float = 90.0
    baseline_window_s: float = 30.0
    baseline_min_samples: int = 15
    blink_min_s: float = 0.03
    blink_max_s: float = 0.5
    microsleep_s: float = 1.0
    blink_rate_window_s: float = 60.0
    perclos_window_s: float = 60.0
    perclos_min_s: float = 5.0  # PERCLOS is reported as meaningful only after this much history
    perclos_drowsy: float = 0.15
    mar_yawn: float = 0.4  # inner-lip height/width; talking rarely holds this for yawn_min_s
    yawn_min_s: float = 1.0
    yawn_window_s: float = 300.0
    yawns_drowsy: int = 3
    head_pose: bool = True
    yaw_away_deg: float = 30.0
    pitch_away_deg: float = 25.0
    distracted_s: float = 2.0


def _dist(p: np.ndarray, a: int, b: int) -> float:
    return float(np.hypot(p[a, 0] - p[b, 0], p[a, 1] - p[b, 1]))


def eye_aspect_ratio(points: np.ndarray, idx: Sequence[int]) -> float:
    """EAR of one eye from (98, 2) landmarks and 6 indices (corner, top1, top2, corner, bottom2, bottom1)."""
    p1, p2, p3, p4, p5, p6 = idx
    width = _dist(points, p1, p4)
    if width <= 1e-6:
        return 0.0
    return (_dist(points, p2, p6) + _dist(points, p3, p5)) / (2.0 * width)


def eye_aspect_ratios(points: np.ndarray) -> Tuple[float, float]:
    """(right eye, left eye) EAR; "right" is the subject's right (image left)."""
    return eye_aspect_ratio(points, RIGHT_EYE_EAR), eye_aspect_ratio(points, LEFT_EYE_EAR)


def mouth_aspect_ratio(points: np.ndarray) -> float:
    """Inner-lip opening / inner-lip width."""
    width = _dist(points, *MOUTH_CORNERS_INNER)
    if width <= 1e-6:
        return 0.0
    return float(np.mean([_dist(points, a, b) for a, b in MOUTH_TOP_BOTTOM_INNER])) / width


#: Open-eye samples between recomputations of the EAR baseline percentile.
BASELINE_REFRESH = 10


class _Window:
    """(t, value) samples of the last `span` seconds with a running sum: O(1) per frame, however
    long the window (PERCLOS over 60 s at 30 FPS is 1,800 samples)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.items = deque()  # type: Deque[Tuple[float, float]]
        self.sum = 0.0

    def expire(self, t: float) -> None:
        while self.items and self.items[0][0] < t - self.span:
            self.sum -= self.items.popleft()[1]

    def add(self, t: float, v: float) -> None:
        self.items.append((t, v))
        self.sum += v
        self.expire(t)

    def total(self, t: float) -> float:
        self.expire(t)
        return self.sum if self.items else 0.0


class DmsMonitor:
    """Per-face analytics; feed it one frame's landmarks (frame pixels) and timestamp at a time."""

    def __init__(self, config: DmsConfig = DmsConfig(), image_size: Optional[Tuple[int, int]] = None) -> None:
        self.config = config
        self.image_size = image_size  # (width, height) for head pose
        self.closed = False
        self._closed_since = None  # type: Optional[float]
        self._mouth_since = None  # type: Optional[float]
        self._yawn_counted = False
        self._away_since = None  # type: Optional[float]
        self._prev_t = None  # type: Optional[float]
        self.blinks = 0
        self.yawns = 0
        self.long_closures = 0
        self._ear = _Window(config.baseline_window_s)  # open-eye EAR samples
        self._closed_s = _Window(config.perclos_window_s)  # seconds spent closed, per frame interval
        self._seen_s = _Window(config.perclos_window_s)  # seconds observed, per frame interval
        self._blink_w = _Window(config.blink_rate_window_s)
        self._yawn_w = _Window(config.yawn_window_s)
        self._start = None  # type: Optional[float]
        self._base = None  # type: Optional[float]
        self._base_age = 0

    def thresholds(self) -> Tuple[float, float, Optional[float]]:
        """(close, open, baseline): relative to the open-eye baseline once there is one.

        The baseline (a high percentile of recent open-eye EAR) is recomputed every
        `BASELINE_REFRESH` samples, not every frame: it drifts slowly by design."""
        c = self.config
        if c.adaptive and len(self._ear.items) >= c.baseline_min_samples:
            if self._base is None or self._base_age >= BASELINE_REFRESH:
                vals = np.fromiter((v for _, v in self._ear.items), np.float64, len(self._ear.items))
                self._base, self._base_age = float(np.percentile(vals, c.baseline_percentile)), 0
            if self._base > 0:
                return c.closed_ratio * self._base, c.open_ratio * self._base, self._base
        return c.ear_closed, c.ear_open, None

    def update(self, points: np.ndarray, t: float) -> Dict[str, Any]:
        """Analyse one frame; returns the JSON-ready state."""
        c = self.config
        if self._start is None:
            self._start = t
        ear_r, ear_l = eye_aspect_ratios(points)
        ear = (ear_r + ear_l) / 2.0
        close_th, open_th, base = self.thresholds()
        was_closed = self.closed
        if self.closed:
            self.closed = ear < open_th
        else:
            self.closed = ear < close_th
        if not self.closed:
            self._ear.add(t, ear)  # the baseline learns from open eyes only
            self._base_age += 1
        if self.closed and not was_closed:
            self._closed_since = t
        elif was_closed and not self.closed and self._closed_since is not None:
            dur = t - self._closed_since
            if c.blink_min_s <= dur <= c.blink_max_s:
                self.blinks += 1
                self._blink_w.add(t, 1)
            elif dur > c.blink_max_s:
                self.long_closures += 1
            self._closed_since = None
        if self._prev_t is not None and t > self._prev_t:  # time-weighted: dropped frames do not bias it
            dt = t - self._prev_t
            self._seen_s.add(t, dt)
            self._closed_s.add(t, dt if was_closed else 0.0)
        self._prev_t = t
        closed_for = t - self._closed_since if self.closed and self._closed_since is not None else 0.0

        mar = mouth_aspect_ratio(points)
        yawning = False
        if mar > c.mar_yawn:
            if self._mouth_since is None:
                self._mouth_since, self._yawn_counted = t, False
            yawning = t - self._mouth_since >= c.yawn_min_s
            if yawning and not self._yawn_counted:
                self.yawns += 1
                self._yawn_counted = True
                self._yawn_w.add(t, 1)
        else:
            self._mouth_since = None

        pose = None  # type: Optional[Tuple[float, float, float]]
        away_for = 0.0
        if c.head_pose:
            from runtime.headpose import euler_from_landmarks

            size = self.image_size or _size_from_points(points)
            pose = tuple(float(v) for v in euler_from_landmarks(points, size))  # type: ignore[assignment]
            away = abs(pose[1]) > c.yaw_away_deg or abs(pose[0]) > c.pitch_away_deg
            if away:
                self._away_since = t if self._away_since is None else self._away_since
                away_for = t - self._away_since
            else:
                self._away_since = None

        seen = self._seen_s.total(t)
        perclos = self._closed_s.total(t) / seen if seen > 0 else 0.0
        history = t - self._start
        span = min(history, c.blink_rate_window_s)
        blink_rate = self._blink_w.total(t) * 60.0 / span if span >= 1.0 else 0.0
        drowsy = []  # type: List[str]
        if closed_for >= c.microsleep_s:
            drowsy.append("eyes closed %.1f s" % closed_for)
        if history >= c.perclos_min_s and perclos >= c.perclos_drowsy:
            drowsy.append("PERCLOS %.0f%%" % (perclos * 100))
        yawns_recent = int(round(self._yawn_w.total(t)))
        if yawns_recent >= c.yawns_drowsy:
            drowsy.append("%d yawns in %.0f s" % (yawns_recent, c.yawn_window_s))
        distracted = away_for >= c.distracted_s
        reasons = drowsy + (["looking away %.1f s" % away_for] if distracted else [])
        if closed_for >= c.microsleep_s:
            state = "asleep"
        elif drowsy:
            state = "drowsy"
        elif distracted:
            state = "distracted"
        else:
            state = "alert"
        return {"ear_right": round(ear_r, 4), "ear_left": round(ear_l, 4), "ear": round(ear, 4),
                "ear_baseline": None if base is None else round(base, 4), "eyes_closed": self.closed,
                "closed_s": round(closed_for, 3), "blinks": self.blinks,
                "blink_rate_per_min": round(blink_rate, 2),
                "long_closures": self.long_closures, "perclos": round(perclos, 4), "mar": round(mar, 4),
                "yawning": yawning, "yawns": self.yawns,
                "head_pose": None if pose is None else {"pitch": round(pose[0], 2), "yaw": round(pose[1], 2),
                                                        "roll": round(pose[2], 2)},
                "state": state, "reasons": reasons}


def _size_from_points(points: np.ndarray) -> Tuple[int, int]:
    """Fallback image size for the pose camera model when the frame size is unknown."""
    span = float(np.max(np.ptp(points, axis=0)))
    s = int(max(32.0, span * 3))
    return s, s
