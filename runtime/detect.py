"""Face detectors behind one small interface: `detector(frame) -> List[Detection]`.

Boxes are returned in the crop contract's convention — the bounding box of the 98
landmarks, which is what training crops from — not the detector's own box. Each detector
therefore maps its raw box through a measured calibration (`BoxCalibration`).

- `HaarDetector` (default): OpenCV's frontal-face Haar cascade (alt2) from `cv2.data.haarcascades`
  (OpenCV 4.x; 5.x dropped it). Runs on a frame downscaled to `max_side` pixels: a few ms
  at 320 px, and with tracking it runs only when a track is lost or every K frames.
- `YuNetDetector` (optional): `cv2.FaceDetectorYN` with a YuNet ONNX file the user supplies
  (no PyPI package ships it); more robust to pose and light, also returns scores.
Anything callable with that signature plugs in (tests inject detectors that miss).
"""
import os
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

Box = Tuple[float, float, float, float]


class Detection(NamedTuple):
    box: Box  # (x0, y0, x1, y1) frame pixels, landmark-box convention
    score: float


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


class HaarDetector:
    """OpenCV Haar cascade on a downscaled, histogram-equalised grayscale frame."""

    def __init__(self, config: DetectConfig = DetectConfig(),
                 calibration: BoxCalibration = HAAR_CALIBRATION) -> None:
        path = haar_cascade_path(config.haar_cascade)
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise DetectorError("cannot load Haar cascade %s" % path)
        self.config = config
        self.calibration = calibration

    def __call__(self, frame: np.ndarray) -> List[Detection]:
        c = self.config
        gray, s = _downscale(frame, c.max_side)
        gray = cv2.equalizeHist(gray)
        m = max(12, int(min(gray.shape[:2]) * c.min_face_frac))
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=c.haar_scale_factor, minNeighbors=c.haar_min_neighbors, minSize=(m, m),
            outputRejectLevels=True)
        out = []
        for (x, y, w, h), wt in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            box = self.calibration.apply(x / s, y / s, w / s, h / s)
            out.append(Detection(box, float(wt)))
        out.sort(key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        return out


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
