"""The live pipeline: capture -> detect/track -> crop -> infer -> decode -> overlay -> sink.

Three threads joined by bounded queues:

    capture ─q_in─► process (track/detect, crop, infer, decode, smooth) ─q_out─► render (DMS, overlay, sinks)

- The process stage is one thread on purpose: with tracking, frame t's crop comes from
  frame t-1's landmarks, so faces within a stream are inherently sequential. What overlaps
  is decoding the next frame, and analysing (DMS), drawing and writing the previous one,
  while the model runs (OpenCV, ONNX Runtime and VART release the GIL while they work).
- Live sources (cameras) never queue up: when the process stage is busy, capture replaces
  the waiting frame with the newest one (counted as dropped), so latency stays one frame.
  Files and image folders block instead, and every frame comes out, in order.
- Frames live in a fixed pool of buffers that capture reads into and render hands back;
  crops go into one preallocated (max_faces, 112, 112) array. The steady state allocates
  only small per-face results.
- The render stage runs on the caller's thread (GUI toolkits want the main thread).
"""
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from runtime.backends.base import Backend
from runtime.detect import Detector
from runtime.dms import DmsConfig, DmsMonitor
from runtime.overlay import draw_frame
from runtime.preprocess import crop_face, to_frame
from runtime.smoothing import SmoothConfig
from runtime.stats import Stats
from runtime.track import FaceTracker, TrackConfig
from runtime.video import Source

STATUS_REFRESH_S = 0.5
# ...and at least every this many frames: a file runs hundreds of frames per second, and a
# status refreshed by the clock alone would show the first frame's "0 fps" for a whole clip
STATUS_REFRESH_FRAMES = 30
STAGES = ("capture", "detect", "detect_bg", "crop", "infer", "decode", "dms", "overlay", "sink", "latency")


@dataclass
class PipelineConfig:
    track: TrackConfig = field(default_factory=TrackConfig)
    smooth: SmoothConfig = field(default_factory=SmoothConfig)
    dms: Optional[DmsConfig] = field(default_factory=DmsConfig)  # None: no driver monitoring
    overlay: bool = True  # draw on the frames (needed for display/video output only)
    queue_size: int = 4  # between stages, for files; live sources use 1 and drop stale frames
    max_frames: Optional[int] = None
    independent_frames: bool = False  # image folders: no tracking, smoothing or DMS across frames
    landmark_decimals: int = 1  # JSONL rounding (pixels)


class FaceEngine:
    """Everything that happens to one frame between capture and overlay."""

    def __init__(self, backend: Backend, detector: Detector, config: PipelineConfig = PipelineConfig(),
                 stats: Optional[Stats] = None) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.config = config
        self.tracker = FaceTracker(detector, config.track, config.smooth)
        self.stats = stats or Stats(STAGES)
        n = config.track.max_faces
        self.crops = np.zeros((n, self.spec.size, self.spec.size), np.uint8)
        self.monitors = {}  # type: Dict[int, DmsMonitor]

    def process(self, frame: np.ndarray, index: int, t: float) -> Tuple[List[Dict[str, Any]],
                                                                          List[Optional[np.ndarray]],
                                                                          Dict[str, float]]:
        """Faces (dicts; "landmarks" is a (98, 2) float32 array in frame pixels — `to_json` makes
        them JSON-ready, in the render thread), the display landmarks, and stage timings (ms)."""
        st = self.stats
        timings = {}  # type: Dict[str, float]
        t0 = time.perf_counter()
        if self.config.independent_frames:
            self.tracker.reset()
        tracks = self.tracker.plan(frame, index)
        t1 = time.perf_counter()
        if self.tracker.ran_detector:
            st["detect"].add(t1 - t0)
            timings["detect"] = (t1 - t0) * 1e3
            st.count("detector_runs")
        elif self.tracker.merged_background:
            st["detect_bg"].add(self.tracker.background.seconds)  # type: ignore[union-attr]
            st.count("detector_runs")
            st.count("background_detections")
        if not tracks:
            return [], [], timings
        affines, boxes = [], []
        for i, tr in enumerate(tracks):
            _, m = crop_face(frame, tr.box, self.spec, out=self.crops[i])
            affines.append(m)
            boxes.append(tr.box)
        t2 = time.perf_counter()
        pts = self.backend.infer(self.crops[:len(tracks)])
        t3 = time.perf_counter()
        faces, shown = [], []  # type: List[Dict[str, Any]], List[Optional[np.ndarray]]
        h, w = frame.shape[:2]
        for i, tr in enumerate(tracks):
            source = tr.source
            lm = to_frame(pts[i], affines[i], self.spec.size)
            ok = self.tracker.update(tr, lm, boxes[i], frame.shape)
            disp = tr.smooth(lm, t) if ok else lm
            x0, y0, x1, y1 = boxes[i]
            face = {"id": tr.id, "box": [round(float(v), 1) for v in boxes[i]], "source": source,
                    "plausible": ok, "edge": bool(x0 < 0 or y0 < 0 or x1 > w - 1 or y1 > h - 1)}
            if not ok:
                face["reason"] = tr.reason
            face["landmarks"] = disp
            faces.append(face)
            shown.append(disp)
        self.tracker.drop_duplicates()
        t4 = time.perf_counter()
        for name, a, b in (("crop", t1, t2), ("infer", t2, t3), ("decode", t3, t4)):
            st[name].add(b - a)
            timings[name] = (b - a) * 1e3
        st.count("faces", len(faces))
        st.count("detected_frames" if any(f["source"] == "detect" for f in faces) else "tracked_frames")
        return faces, shown, timings

    def analyse(self, faces: List[Dict[str, Any]], t: float, frame_shape: Tuple[int, ...],
                timings: Optional[Dict[str, float]] = None) -> None:
        """Driver-monitoring state into each plausible face (`face["dms"]`), in frame order.

        Separate from `process` so the pipeline can run it on the render thread, off the
        model's thread: it needs only the landmarks and the time."""
        if self.config.dms is None:
            return
        a = time.perf_counter()
        h, w = frame_shape[:2]
        alive = []
        for face in faces:
            alive.append(face["id"])
            if face["plausible"]:
                mon = self.monitors.get(face["id"])
                if mon is None:
                    mon = self.monitors[face["id"]] = DmsMonitor(self.config.dms, (w, h))
                face["dms"] = mon.update(face["landmarks"], t)
        self._forget(alive)
        d = time.perf_counter() - a
        self.stats["dms"].add(d)
        if timings is not None:
            timings["dms"] = d * 1e3

    def run_frame(self, frame: np.ndarray, index: int, t: float) -> Tuple[List[Dict[str, Any]],
                                                                            List[Optional[np.ndarray]],
                                                                            Dict[str, float]]:
        """`process` + `analyse` in one call (single-threaded use: tests, scripts)."""
        faces, shown, timings = self.process(frame, index, t)
        self.analyse(faces, t, frame.shape, timings)
        return faces, shown, timings

    def close(self) -> None:
        self.tracker.close()

    def _forget(self, alive: List[int]) -> None:
        for k in [k for k in self.monitors if k not in alive]:
            del self.monitors[k]


def to_json(face: Dict[str, Any], decimals: int = 1) -> Dict[str, Any]:
    """A face dict with its landmark array as rounded nested lists (for JSONL)."""
    out = dict(face)
    out["landmarks"] = np.round(np.asarray(face["landmarks"], np.float64), decimals).tolist()
    return out


class _Item:
    __slots__ = ("index", "t", "frame", "buf", "t_cap", "faces", "shown", "timings", "where")

    def __init__(self, index: int, t: float, frame: np.ndarray, buf: int, t_cap: float, where: str) -> None:
        self.index, self.t, self.frame, self.buf, self.t_cap, self.where = index, t, frame, buf, t_cap, where
        self.faces = []  # type: List[Dict[str, Any]]
        self.shown = []  # type: List[Optional[np.ndarray]]
        self.timings = {}  # type: Dict[str, float]


_END = None


class Pipeline:
    """Runs a Source through a FaceEngine into sinks; `run()` returns the final summary."""

    def __init__(self, source: Source, engine: FaceEngine, video_sinks: Optional[List[Any]] = None,
                 jsonl: Optional[Any] = None, log: Optional[Callable[[str], None]] = None,
                 config: Optional[PipelineConfig] = None) -> None:
        self.source = source
        self.engine = engine
        self.stats = engine.stats
        self.config = config or engine.config
        self.video_sinks = video_sinks or []
        self.jsonl = jsonl
        self.log = log or (lambda s: None)
        live = source.live
        qsize = 1 if live else max(1, self.config.queue_size)
        self.q_in = queue.Queue(qsize)  # type: queue.Queue
        self.q_out = queue.Queue(qsize)  # type: queue.Queue
        # every buffer is in at most one place: a queue slot, a stage, or the free list
        n_bufs = 2 * qsize + 4
        shape = source.shape
        self.bufs = [np.empty(shape, np.uint8) for _ in range(n_bufs)]
        self.free = queue.Queue()  # type: queue.Queue
        for i in range(n_bufs):
            self.free.put(i)
        self.stop = threading.Event()
        self.errors = []  # type: List[BaseException]
        self.frames_out = 0
        self.no_face_frames = 0
        self._no_face_run = False
        self._edge_run = False
        self._status_lines = []  # type: List[str]
        self._status_t = -1e9
        self._status_frame = -STATUS_REFRESH_FRAMES
        self.cpu_s = {}  # type: Dict[str, float]  # CPU seconds each stage thread used

    # --- helpers -------------------------------------------------------------------
    def _put(self, q: "queue.Queue", item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: "queue.Queue") -> Any:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set() and q.empty():
                    return _END

    def _fail(self, e: BaseException) -> None:
        self.errors.append(e)
        self.stop.set()

    # --- stages --------------------------------------------------------------------
    def _capture(self) -> None:
        src, st = self.source, self.stats
        t_start = time.perf_counter()
        cpu0 = time.thread_time()
        index = 0
        try:
            while not self.stop.is_set():
                if self.config.max_frames is not None and index >= self.config.max_frames:
                    break
                try:
                    b = self.free.get(timeout=0.1)
                except queue.Empty:
                    continue
                a = time.perf_counter()
                frame = src.read(self.bufs[b])
                now = time.perf_counter()
                if frame is None:
                    self.free.put(b)
                    break
                if frame is not self.bufs[b]:  # odd-sized frame (image folders): keep it as is
                    self.free.put(b)
                    b = -1
                st["capture"].add(now - a)
                t = now - t_start if src.live else index / src.fps
                item = _Item(index, t, frame, b, a, src.position())
                index += 1
                if src.live:
                    try:
                        self.q_in.put_nowait(item)
                    except queue.Full:
                        try:  # replace the stale waiting frame with this one
                            old = self.q_in.get_nowait()
                            if old is not _END and old.buf >= 0:
                                self.free.put(old.buf)
                            st.count("dropped")
                        except queue.Empty:
                            pass
                        self.q_in.put_nowait(item)
                elif not self._put(self.q_in, item):
                    break
        except BaseException as e:  # noqa: B902 - reported to the main thread
            self._fail(e)
        finally:
            self.cpu_s["capture"] = time.thread_time() - cpu0
            self._put_end(self.q_in)

    def _put_end(self, q: "queue.Queue") -> None:
        while True:
            try:
                q.put(_END, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass

    def _process(self) -> None:
        cpu0 = time.thread_time()
        try:
            while True:
                item = self._get(self.q_in)
                if item is _END:
                    break
                item.faces, item.shown, item.timings = self.engine.process(item.frame, item.index, item.t)
                if not self._put(self.q_out, item):
                    break
        except BaseException as e:  # noqa: B902
            self._fail(e)
        finally:
            self.cpu_s["process"] = time.thread_time() - cpu0
            self._put_end(self.q_out)

    def _render_one(self, item: _Item) -> bool:
        st = self.stats
        self.engine.analyse(item.faces, item.t, item.frame.shape, item.timings)
        a = time.perf_counter()
        if self.config.overlay and self.video_sinks:
            # percentiles are not free: refresh twice a second or every STATUS_REFRESH_FRAMES frames
            if (a - self._status_t > STATUS_REFRESH_S
                    or self.frames_out - self._status_frame >= STATUS_REFRESH_FRAMES):
                self._status_lines, self._status_t = self.stats.overlay_lines(), a
                self._status_frame = self.frames_out
            draw_frame(item.frame, item.faces, item.shown, self._status_lines)
        b = time.perf_counter()
        keep_going = True
        for s in self.video_sinks:
            if s.write(item.frame) is False:
                keep_going = False
        c = time.perf_counter()
        item.timings["overlay"] = (b - a) * 1e3
        item.timings["sink"] = (c - b) * 1e3
        item.timings["latency"] = (c - item.t_cap) * 1e3
        st["overlay"].add(b - a)
        st["sink"].add(c - b)
        st["latency"].add(c - item.t_cap)
        st.fps.tick(c)
        self._report(item)
        if self.jsonl is not None:
            self.jsonl.write(self._record(item))
        if item.buf >= 0:
            self.free.put(item.buf)
        self.frames_out += 1
        return keep_going

    def _report(self, item: _Item) -> None:
        """Messages on transitions only (no face / face back / face at the edge), not per frame."""
        if not item.faces:
            self.no_face_frames += 1
            if not self._no_face_run:
                self.log("%s: no face" % item.where)
            self._no_face_run = True
        elif self._no_face_run:
            self.log("%s: face found" % item.where)
            self._no_face_run = False
        edge = any(f["edge"] for f in item.faces)
        if edge and not self._edge_run:
            self.log("%s: face at the frame edge (partly outside the frame; the crop is padded and "
                     "landmarks there are extrapolated)" % item.where)
            self.stats.count("edge_events")
        self._edge_run = edge

    def _record(self, item: _Item) -> Dict[str, Any]:
        return {"frame": item.index, "t": round(item.t, 4), "source": item.where,
                "status": "ok" if item.faces else "no face",
                "faces": [to_json(f, self.config.landmark_decimals) for f in item.faces],
                "timings_ms": {k: round(v, 3) for k, v in item.timings.items()}}

    def run(self) -> Dict[str, Any]:
        threads = [threading.Thread(target=self._capture, name="flm-capture", daemon=True),
                   threading.Thread(target=self._process, name="flm-process", daemon=True)]
        for th in threads:
            th.start()
        interrupted = False
        cpu0, proc0 = time.thread_time(), time.process_time()
        try:
            while True:
                item = self._get(self.q_out)
                if item is _END:
                    break
                if not self._render_one(item):
                    self.stop.set()  # the user closed the window
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
        except BaseException as e:  # noqa: B902
            self._fail(e)
        finally:
            self.cpu_s["render"] = time.thread_time() - cpu0
            self.stop.set()
            for th in threads:
                th.join(timeout=10)
        if self.errors:
            raise self.errors[0]
        out = self.stats.summary()
        n = max(1, self.frames_out)
        # CPU per frame of each stage thread: unlike wall-clock latencies, this does not grow when
        # other processes compete for the cores, so it bounds the FPS of an idle machine
        # (process_cpu also counts decoder and inference pool threads outside the three stages)
        out.update(frames_out=self.frames_out, no_face_frames=self.no_face_frames, interrupted=interrupted,
                   cpu_ms_per_frame={k: v * 1e3 / n for k, v in self.cpu_s.items()},
                   process_cpu_ms_per_frame=(time.process_time() - proc0) * 1e3 / n)
        return out

