"""Face detectors behind one small interface: `detector(frame) -> List[Detection]`.

Boxes are returned in the crop contract's convention — the bounding box of the 98
landmarks, which is what training crops from — not the detector's own box. Each detector
therefore maps its raw box through a measured calibration (`BoxCalibration`).

- `HaarDetector` (default): OpenCV's frontal-face Haar cascade (alt2) from `cv2.data.haarcascades`
  (OpenCV 4.x; 5.x dropped it). Runs on a frame downscaled to `max_side` pixels: a few ms
  at 320 px, and with tracking it runs only when a track is lost or every K frames.
  A frontal cascade misses faces turned to profile or rolled beyond ~20 deg, so when the frontal
  pass finds nothing, fallback passes run (merged by NMS): the profile cascade on the frame and on
  its mirror (it only knows one side), and the frontal cascade on copies of the frame rotated by
  `rotations`. `HaarDetector.confirm(frame, box, roll)` answers "is there a face in this tracked
  box?": it cuts a region around the box, turns it upright by the landmarks' roll and runs the
  frontal and both profile cascades there with fewer neighbours (the tracker's confirmation of a
  track the full-frame passes do not see; cheap: one 128 px region).
- `YuNetDetector` (optional): `cv2.FaceDetectorYN` with a YuNet ONNX file the user supplies
  (no PyPI package ships it); more robust to pose and light, also returns scores.
Anything callable with that signature plugs in (tests inject detectors that miss).
"""
import os
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

Box = Tuple[float, float, float, float]


class Detection(NamedTuple):
    box: Box  # (x0, y0, x1, y1) frame pixels, landmark-box convention
    score: float
    kind: str = "frontal"  # which pass found it: "frontal", "profile" or "rotated"


Detector = Callable[[np.ndarray], List[Detection]]


class DetectorError(RuntimeError):
    """A detector cannot be created (missing cascade/model file, OpenCV without support)."""


@dataclass(frozen=True)
class BoxCalibration:
    """Raw detector box (x, y, w, h) -> landmark bounding box, as fractions of the raw width.

    centre = raw centre + (dx, dy) * w; size = (sw, sh) * w.
    """

    dx: float = 0.0
    dy: float = 0.0
    sw: float = 1.0
    sh: float = 1.0

    def apply(self, x: float, y: float, w: float, h: float) -> Box:
        x, y, w, h = float(x), float(y), float(w), float(h)
        cx, cy = x + w / 2.0 + self.dx * w, y + h / 2.0 + self.dy * w
        hw, hh = self.sw * w / 2.0, self.sh * w / 2.0
        return cx - hw, cy - hh, cx + hw, cy + hh


#: Medians over the 325 faces the cascade found among 368 faces of ../shared/data/faces98 (68 WFLW
#: test faces in WIDER scenes + 300 LFW/WFLW train faces; frames downscaled to 320 px): the landmark
#: box is ~0.83x0.81 of the Haar box (interquartile 0.80-0.87) and its centre sits 0.16 box-widths
#: lower (Haar boxes include the forehead, WFLW landmarks start at the brows).
HAAR_CALIBRATION = BoxCalibration(dx=0.0, dy=0.159, sw=0.829, sh=0.814)
#: The profile cascade (mirrored passes negate dx): medians over 1242 matches on the 4704 faces98
#: train faces pasted at random poses onto a 640x480 frame as scripts/make_face_video.py does (the
#: frontal cascade gives 0.839x0.835, dy 0.159 there: the calibration above). Profile boxes are
#: larger than the face and centred on its back (ear) side.
PROFILE_CALIBRATION = BoxCalibration(dx=-0.108, dy=0.154, sw=0.743, sh=0.740)
#: YuNet boxes are tighter and lower than Haar's (chin to brow); rough values from the
#: model's published examples, UNVERIFIED here (the ONNX is not shipped): override if needed.
YUNET_CALIBRATION = BoxCalibration(dx=0.0, dy=0.02, sw=1.0, sh=0.95)


@dataclass(frozen=True)
class DetectConfig:
    name: str = "haar"  # "haar" or "yunet"
    max_side: int = 320  # detect on a frame downscaled to this longer side
    min_face_frac: float = 0.15  # smallest face (Haar box), as a fraction of the frame's shorter side
    # alt2 with 3 neighbours: same recall on real faces as the "default" cascade (325/368 on faces98),
    # fewer spurious boxes, and it finds the synthetic renderer's faces (42/45 frames vs 24/45)
    haar_cascade: str = "haarcascade_frontalface_alt2.xml"
    haar_scale_factor: float = 1.1
    haar_min_neighbors: int = 3
    # fallback passes when the frontal pass finds nothing ("" / () disables one)
    profile_cascade: str = "haarcascade_profileface.xml"
    # more neighbours than the frontal pass: the fallback passes fire on hair, ears and shoulders
    # ~6 % of frames at 3 (frontal: ~1 %), ~3 % at 5
    fallback_min_neighbors: int = 5
    rotations: Tuple[float, ...] = (-25.0, 25.0)  # degrees; frontal cascade on rotated copies
    nms_iou: float = 0.3  # fallback boxes overlapping more than this are one face
    # fallback passes per call (profile both sides = one pass, each rotation = one), taken in turn;
    # 0 runs them all. One keeps a frame with no face at ~frontal + one pass (all: ~6x a frontal
    # pass, which would slow a camera nobody sits in front of), and a lost face is still tried
    # with every pass within a few frames, since the tracker detects on every frame while lost
    fallback_per_call: int = 1
    # confirm(): region side in px (the box's longer side maps to 128 / confirm_context px) and neighbours
    confirm_size: int = 128
    confirm_context: float = 2.0
    confirm_min_neighbors: int = 2
    # a confirming box must have about the tracked box's size and centre (a track whose box grew,
    # shrank or slid off its face is not confirmed)
    confirm_size_range: Tuple[float, float] = (0.7, 1.45)
    confirm_max_shift: float = 0.25  # centre distance, in tracked box sides
    yunet_model: Optional[str] = None
    yunet_score: float = 0.7


def _downscale(frame: np.ndarray, max_side: int) -> Tuple[np.ndarray, float]:
    """Grayscale frame scaled so its longer side is <= max_side; returns (image, scale)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 and frame.shape[2] == 3 else \
        (frame if frame.ndim == 2 else frame[:, :, 0])
    s = min(1.0, float(max_side) / max(gray.shape[:2]))
    if s < 1.0:
        size = (max(1, int(round(gray.shape[1] * s))), max(1, int(round(gray.shape[0] * s))))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray, s


def haar_cascade_path(name: str = DetectConfig.haar_cascade) -> str:
    if os.path.isfile(name):
        return name
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not data or not hasattr(cv2, "CascadeClassifier"):
        raise DetectorError("this OpenCV (%s) has no Haar cascades (OpenCV 5 removed them): install "
                            "opencv-python-headless<5, or use --detector yunet --yunet-model FILE.onnx"
                            % cv2.__version__)
    path = os.path.join(data, name)
    if not os.path.isfile(path):
        raise DetectorError("Haar cascade %s not found in %s" % (name, data))
    return path


def nms(dets: List[Detection], max_iou: float) -> List[Detection]:
    """Greedy non-maximum suppression in list order (earlier detections win)."""
    kept = []  # type: List[Detection]
    for d in dets:
        if all(iou(d.box, k.box) <= max_iou for k in kept):
            kept.append(d)
    return kept


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (0 for empty ones)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _load_cascade(name: str) -> "cv2.CascadeClassifier":
    path = haar_cascade_path(name)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise DetectorError("cannot load Haar cascade %s" % path)
    return cascade


class HaarDetector:
    """OpenCV Haar cascades on a downscaled, histogram-equalised grayscale frame: the frontal
    cascade first; profile (both sides) and rotated frontal passes only when it finds nothing."""

    def __init__(self, config: DetectConfig = DetectConfig(),
                 calibration: BoxCalibration = HAAR_CALIBRATION,
                 profile_calibration: BoxCalibration = PROFILE_CALIBRATION) -> None:
        self.cascade = _load_cascade(config.haar_cascade)
        self.profile = _load_cascade(config.profile_cascade) if config.profile_cascade else None
        self.config = config
        self.calibration = calibration
        self.profile_calibration = profile_calibration
        self._turn = 0  # next fallback pass (fallback_per_call > 0)

    def _raw(self, cascade: "cv2.CascadeClassifier", gray: np.ndarray, min_neighbors: int,
             min_size: int, max_size: int = 0) -> List[Tuple[float, float, float, float, float]]:
        """[(x, y, w, h, level weight)] of one cascade pass."""
        boxes, _, weights = cascade.detectMultiScale3(
            gray, scaleFactor=self.config.haar_scale_factor, minNeighbors=min_neighbors,
            minSize=(min_size, min_size), maxSize=(max_size, max_size), outputRejectLevels=True)
        return [(float(x), float(y), float(w), float(h), float(wt)) for (x, y, w, h), wt in
                zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1))]

    def _profiles(self, gray: np.ndarray, min_neighbors: int, min_size: int, max_size: int = 0
                  ) -> List[Tuple[float, float, float, float, float, BoxCalibration]]:
        """Profile cascade on the image and its mirror, boxes in image pixels with their calibration."""
        if self.profile is None:
            return []
        cal, wid = self.profile_calibration, gray.shape[1]
        out = [r + (cal,) for r in self._raw(self.profile, gray, min_neighbors, min_size, max_size)]
        mirrored = BoxCalibration(-cal.dx, cal.dy, cal.sw, cal.sh)
        for x, y, w, h, wt in self._raw(self.profile, cv2.flip(gray, 1), min_neighbors, min_size, max_size):
            out.append((wid - x - w, y, w, h, wt, mirrored))
        return out

    def __call__(self, frame: np.ndarray) -> List[Detection]:
        c = self.config
        gray, s = _downscale(frame, c.max_side)
        gray = cv2.equalizeHist(gray)
        m = max(12, int(min(gray.shape[:2]) * c.min_face_frac))
        out = [Detection(self.calibration.apply(x / s, y / s, w / s, h / s), wt)
               for x, y, w, h, wt in self._raw(self.cascade, gray, c.haar_min_neighbors, m)]
        if not out:
            out = nms(self._fallback(gray, s, m), c.nms_iou)
        out.sort(key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        return out

    def _fallback(self, gray: np.ndarray, s: float, m: int) -> List[Detection]:
        """The fallback passes this call runs: all, or the next `fallback_per_call` in turn."""
        passes = ([None] if self.profile is not None else []) + list(self.config.rotations)
        n = self.config.fallback_per_call
        if n > 0 and passes:
            chosen = [passes[(self._turn + i) % len(passes)] for i in range(min(n, len(passes)))]
            self._turn = (self._turn + len(chosen)) % len(passes)
            passes = chosen
        out = []  # type: List[Detection]
        for p in passes:
            out += self._profile_pass(gray, s, m) if p is None else self._rotated_pass(gray, s, m, (p,))
        return out

    def _profile_pass(self, gray: np.ndarray, s: float, m: int) -> List[Detection]:
        return [Detection(cal.apply(x / s, y / s, w / s, h / s), wt, "profile")
                for x, y, w, h, wt, cal in self._profiles(gray, self.config.fallback_min_neighbors, m)]

    def _rotated_pass(self, gray: np.ndarray, s: float, m: int, angles: Tuple[float, ...]) -> List[Detection]:
        """The frontal cascade on copies rotated by each of `angles` degrees (same size, edges
        replicated); each calibrated box centre is mapped back, its size kept (on faces rolled by
        15-35 deg the landmark box is 0.91x such a box, median, IQR 0.86-0.96: close enough)."""
        out = []  # type: List[Detection]
        hgt, wid = gray.shape[:2]
        for angle in angles:
            rot = cv2.getRotationMatrix2D((wid / 2.0, hgt / 2.0), float(angle), 1.0)
            inv = cv2.invertAffineTransform(rot)
            img = cv2.warpAffine(gray, rot, (wid, hgt), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
            for x, y, w, h, wt in self._raw(self.cascade, img, self.config.fallback_min_neighbors, m):
                b = self.calibration.apply(x, y, w, h)  # upright face, rotated-image pixels
                cx, cy = inv[:, :2] @ ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0) + inv[:, 2]
                hw, hh = (b[2] - b[0]) / 2.0, (b[3] - b[1]) / 2.0
                box = ((cx - hw) / s, (cy - hh) / s, (cx + hw) / s, (cy + hh) / s)
                out.append(Detection(box, wt, "rotated"))
        return out

    def confirm(self, frame: np.ndarray, box: Box, roll: float = 0.0) -> bool:
        """Whether a face sits in `box` (landmark-box convention) rolled by `roll` degrees (image
        y down: positive turns clockwise): the region around it, turned upright, scaled so the
        box spans confirm_size / confirm_context px, seen by the frontal cascade or the profile
        cascade (either side) with confirm_min_neighbors, at about the box's size and place."""
        c = self.config
        side = max(box[2] - box[0], box[3] - box[1])
        if not side > 0:
            return False
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        n = int(c.confirm_size)
        k = n / (c.confirm_context * side)
        rot = cv2.getRotationMatrix2D((cx, cy), float(roll), k)  # OpenCV: positive angle = counter-clockwise
        rot[:, 2] += (n / 2.0 - cx, n / 2.0 - cy)
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        flags = cv2.INTER_AREA if k < 1.0 else cv2.INTER_LINEAR
        roi = cv2.warpAffine(gray, rot, (n, n), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        roi = cv2.equalizeHist(roi)
        expect = side * k  # landmark box side in region pixels; Haar boxes are ~1 / 0.83 of it
        lo = int(c.confirm_size_range[0] * expect / self.calibration.sw)
        hi = min(n, int(c.confirm_size_range[1] * expect / self.calibration.sw))
        raw = self._raw(self.cascade, roi, c.confirm_min_neighbors, lo, hi)
        cands = [r + (self.calibration,) for r in raw]
        if not self._near(cands, n, expect):
            cands = self._profiles(roi, c.confirm_min_neighbors, lo, hi)
            return self._near(cands, n, expect)
        return True

    def _near(self, cands: List[Tuple[float, float, float, float, float, BoxCalibration]], n: int,
              expect: float) -> bool:
        for x, y, w, h, _, cal in cands:
            b = cal.apply(x, y, w, h)
            shift = np.hypot((b[0] + b[2]) / 2.0 - n / 2.0, (b[1] + b[3]) / 2.0 - n / 2.0)
            if shift <= self.config.confirm_max_shift * expect:
                return True
        return False


class YuNetDetector:
    """cv2.FaceDetectorYN with a user-supplied YuNet ONNX (e.g. face_detection_yunet_2023mar.onnx)."""

    def __init__(self, config: DetectConfig, calibration: BoxCalibration = YUNET_CALIBRATION) -> None:
        if not config.yunet_model:
            raise DetectorError("--detector yunet needs --yunet-model FILE.onnx (OpenCV Zoo's "
                                "face_detection_yunet_2023mar.onnx; not shipped with flm)")
        if not os.path.isfile(config.yunet_model):
            raise DetectorError("YuNet model not found: %s" % config.yunet_model)
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorError("this OpenCV (%s) has no FaceDetectorYN" % cv2.__version__)
        try:
            self.net = cv2.FaceDetectorYN.create(config.yunet_model, "", (320, 320), config.yunet_score)
        except cv2.error as e:
            raise DetectorError("cannot load YuNet model %s: %s" % (config.yunet_model, e)) from e
        self.config = config
        self.calibration = calibration
        self._size = None  # type: Optional[Tuple[int, int]]

    def __call__(self, frame: np.ndarray) -> List[Detection]:
        img = frame if frame.ndim == 3 and frame.shape[2] == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        s = min(1.0, float(self.config.max_side) / max(img.shape[:2]))
        if s < 1.0:
            img = cv2.resize(img, (int(round(img.shape[1] * s)), int(round(img.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
        size = (img.shape[1], img.shape[0])
        if size != self._size:
            self.net.setInputSize(size)
            self._size = size
        _, faces = self.net.detect(img)
        out = []
        for f in (faces if faces is not None else []):
            x, y, w, h = (float(v) / s for v in f[:4])
            out.append(Detection(self.calibration.apply(x, y, w, h), float(f[-1])))
        out.sort(key=lambda d: -d.score)
        return out


def make_detector(config: DetectConfig = DetectConfig()) -> Detector:
    if config.name == "haar":
        return HaarDetector(config)
    if config.name == "yunet":
        return YuNetDetector(config)
    raise DetectorError("unknown detector %r (choose haar or yunet)" % config.name)
