"""Frame sources (camera, video file, image directory) and sinks (video file, display, JSONL).

Sources read into caller-supplied buffers (`read(into)`), so the pipeline cycles a fixed
pool of frame buffers instead of allocating one per frame. `live` sources (cameras) are
the ones the pipeline may drop stale frames from; files and image folders are processed
completely and in order.

Sinks write to a temporary file beside the target and rename it on a clean close, so an
interrupted or failed run never leaves a half-written file under the requested name.
"""
import json
import os
import time
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


class SourceError(RuntimeError):
    """A source cannot be opened or read (no camera, unreadable file, empty folder)."""


class Source:
    live = False
    name = "source"
    fps = 30.0
    frame_count = None  # type: Optional[int]

    @property
    def shape(self) -> Tuple[int, int, int]:
        raise NotImplementedError

    def read(self, into: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """Next frame (BGR uint8), written into `into` when its shape fits; None at the end."""
        raise NotImplementedError

    def position(self) -> str:
        """Human description of the frame just read (for messages)."""
        return self.name

    def close(self) -> None:
        pass


class _CaptureSource(Source):
    loop = False

    def __init__(self, cap: Any, name: str) -> None:
        self.cap = cap
        self.name = name
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(self._unreadable())
        self._first = first  # type: Optional[np.ndarray]
        self._shape = first.shape if first.ndim == 3 else first.shape + (1,)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 30.0
        self.index = -1

    def _unreadable(self) -> str:
        return "%s gives no frames" % self.name

    @property
    def shape(self) -> Tuple[int, int, int]:
        return self._shape  # type: ignore[return-value]

    def read(self, into: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        if self._first is not None:
            frame, self._first = self._first, None
            if into is not None and into.shape == frame.shape:
                into[...] = frame
                frame = into
        else:
            ok, frame = self.cap.read(into) if into is not None else self.cap.read()
            if (not ok or frame is None) and self.loop and self.index >= 0:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # benchmarks: run a short clip for N frames
                ok, frame = self.cap.read(into) if into is not None else self.cap.read()
            if not ok or frame is None:
                return None
        self.index += 1
        return frame

    def position(self) -> str:
        return "%s frame %d" % (self.name, self.index)

    def close(self) -> None:
        self.cap.release()


def _quiet_open(index: int) -> Any:
    """cv2.VideoCapture(index) without OpenCV's own warnings (we explain failures ourselves)."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old = log.getLogLevel() if log is not None else None
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        return cv2.VideoCapture(index)
    finally:
        if log is not None:
            log.setLogLevel(old)


class CameraSource(_CaptureSource):
    live = True

    def __init__(self, index: int, width: Optional[int] = None, height: Optional[int] = None,
                 fps: Optional[float] = None) -> None:
        cap = _quiet_open(int(index))
        if not cap.isOpened():
            raise SourceError("no camera at index %d (/dev/video%d cannot be opened); list cameras with "
                              "`v4l2-ctl --list-devices`" % (index, index))
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))
        if fps:
            cap.set(cv2.CAP_PROP_FPS, float(fps))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: we want the newest frame
        super().__init__(cap, "camera %d" % index)


class VideoFileSource(_CaptureSource):
    def __init__(self, path: str, loop: bool = False) -> None:
        if not os.path.isfile(path):
            raise SourceError("video file not found: %s" % path)
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise SourceError("cannot open video %s: not a video OpenCV can decode" % path)
        self.path = path
        self.loop = loop
        super().__init__(cap, path)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = n if n > 0 else None

    def _unreadable(self) -> str:
        return "cannot read video %s: no decodable frames (corrupt file or unsupported codec)" % self.name


class ImageDirSource(Source):
    """Every image file in a folder, sorted by name; unreadable files are reported and skipped."""

    fps = 1.0

    def __init__(self, root: str) -> None:
        if not os.path.isdir(root):
            raise SourceError("image folder not found: %s" % root)
        self.root = root
        self.name = root
        self.files = sorted(f for f in os.listdir(root) if f.lower().endswith(IMAGE_SUFFIXES))
        if not self.files:
            raise SourceError("no images (%s) in %s" % (", ".join(IMAGE_SUFFIXES), root))
        self.frame_count = len(self.files)
        self.skipped = []  # type: List[str]
        self._i = 0
        self.current = ""
        first = None
        for f in self.files:
            first = cv2.imread(os.path.join(root, f), cv2.IMREAD_COLOR)
            if first is not None:
                break
        if first is None:
            raise SourceError("none of the %d image files in %s can be read" % (len(self.files), root))
        self._shape = first.shape

    @property
    def shape(self) -> Tuple[int, int, int]:
        return self._shape  # type: ignore[return-value]

    def read(self, into: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        while self._i < len(self.files):
            name = self.files[self._i]
            self._i += 1
            img = cv2.imread(os.path.join(self.root, name), cv2.IMREAD_COLOR)
            if img is None:
                self.skipped.append(name)
                continue
            self.current = name
            if into is not None and into.shape == img.shape:
                into[...] = img
                return into
            return img
        return None

    def position(self) -> str:
        return os.path.join(self.root, self.current)


def open_source(camera: Optional[int] = None, video: Optional[str] = None,
                images: Optional[str] = None) -> Source:
    given = [x is not None for x in (camera, video, images)]
    if sum(given) != 1:
        raise SourceError("give exactly one source: --camera INDEX, --video FILE or --images DIR")
    if camera is not None:
        return CameraSource(camera)
    if video is not None:
        return VideoFileSource(video)
    return ImageDirSource(images)  # type: ignore[arg-type]


def _partial(path: str) -> str:
    """Temp name beside `path`, keeping the suffix (OpenCV picks the container by it)."""
    d, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    return os.path.join(d, ".%s.partial.%d%s" % (stem, os.getpid(), ext))


class VideoSink:
    """MP4 (mp4v) writer; frames of a different size than the first are resized."""

    def __init__(self, path: str, fps: float, size: Tuple[int, int]) -> None:
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise SourceError("output folder does not exist: %s" % d)
        self.path = path
        self.tmp = _partial(path)
        self.size = size
        self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self.writer.isOpened():
            raise SourceError("cannot write video %s (OpenCV has no encoder for %s)"
                              % (path, os.path.splitext(path)[1] or "this suffix"))
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size)
        self.writer.write(frame)
        self.frames += 1

    def close(self, ok: bool = True) -> None:
        self.writer.release()
        if ok and self.frames:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


class JsonlSink:
    """One JSON object per line; compact separators, floats rounded by the caller."""

    def __init__(self, path: str) -> None:
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise SourceError("output folder does not exist: %s" % d)
        self.path = path
        self.tmp = _partial(path)
        self.f = open(self.tmp, "w")  # type: IO[str]
        self.records = 0

    def write(self, record: Dict[str, Any]) -> None:
        self.f.write(json.dumps(record, separators=(",", ":")))
        self.f.write("\n")
        self.records += 1

    def close(self, ok: bool = True) -> None:
        self.f.close()
        if ok:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def display_available() -> str:
    """"" if cv2.imshow can work here, else why not."""
    if "NONE" in _gui_backend():
        return "this OpenCV build has no GUI (opencv-python-headless)"
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set)"
    return ""


def _gui_backend() -> str:
    try:
        info = cv2.getBuildInformation()
        line = info.split("GUI:")[1].splitlines()[0]
        return line.strip().upper()
    except (IndexError, cv2.error):
        return ""


class DisplaySink:
    """cv2.imshow window; `write` returns False when the user pressed q or Esc."""

    def __init__(self, title: str = "flm-dpu") -> None:
        why = display_available()
        if why:
            raise SourceError("cannot show video: %s. Pass --no-display (and --output out.mp4 to keep the "
                              "result)" % why)
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        self._last = time.perf_counter()

    def write(self, frame: np.ndarray) -> bool:
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self, ok: bool = True) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
