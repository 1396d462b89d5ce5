"""Evaluate any loadable model on annotated faces through the serving code path.

`evaluate` crops every face with `runtime.preprocess.crop_face`, runs the
backend's `infer` (Keras, TFLite, ONNX or VART: the same call the camera loop
makes), maps predictions back to frame pixels with `to_frame` and scores them with
`runtime.metrics.summarize` in frame pixels. Because FP32 and INT8 artifacts go
through identical crops and decoding, their numbers differ only by the model.

numpy + OpenCV only (the board's `flm-dpu eval` calls this); Python 3.8 syntax.
Records are duck-typed: anything with `.image_path` (or `.image`), `.landmarks` (98, 2) frame
pixels, `.box` (4,), `.attributes` (6,) flags, e.g. `runtime.wflw.FaceRecord`.
"""
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from runtime import metrics
from runtime.landmarks import ATTRIBUTES, NUM_POINTS
from runtime.preprocess import (
    DEFAULT_SPEC,
    CropSpec,
    box_from_landmarks,
    crop_face,
    crop_window,
    to_crop_normalised,
    to_frame,
    validate_box,
    window_affine,
)

#: Where the face box comes from. "landmarks": the GT landmarks' bounding box (the PFLD
#: protocol, and how training crops); "annotation": the record's own box (WFLW's detector box).
BOX_SOURCES = ("landmarks", "annotation")

Progress = Optional[Callable[[int], Any]]


def image_path(record: Any) -> str:
    """A record's image path (`runtime.wflw.FaceRecord.image_path`, or `.image` for other records)."""
    path = getattr(record, "image_path", None) or getattr(record, "image", None)
    if path is None:
        raise ValueError("record %r has no image path" % (record,))
    return str(path)


def _where(record: Any) -> str:
    if hasattr(record, "where"):
        return "%s (%s)" % (image_path(record), record.where())
    line = getattr(record, "line", None)
    return "%s%s" % (image_path(record), "" if line is None else " (annotation line %s)" % line)


def face_box(record: Any, box: str = "landmarks") -> Tuple[float, float, float, float]:
    """The box a face is cropped from, per `BOX_SOURCES`."""
    if box == "landmarks":
        return box_from_landmarks(record.landmarks)
    if box == "annotation":
        try:
            return validate_box(record.box)
        except ValueError as e:
            raise ValueError("%s: %s" % (_where(record), e)) from None
    raise ValueError("box must be one of %s, got %r" % (", ".join(BOX_SOURCES), box))


def crop_affine(box: Sequence[float], spec: CropSpec = DEFAULT_SPEC) -> np.ndarray:
    """The frame->crop affine `crop_face` would use for this box, without needing the image."""
    x0, y0, side = crop_window(box, spec.scale)
    return window_affine(x0, y0, side, spec.size)


def load_image(record: Any) -> np.ndarray:
    """Read a record's image as BGR, as the camera path delivers frames."""
    frame = cv2.imread(image_path(record), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError("cannot read image %s" % _where(record))
    return frame


def _stack(records: Sequence[Any]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    gt = np.stack([np.asarray(r.landmarks, np.float32).reshape(NUM_POINTS, 2) for r in records])
    attrs = [getattr(r, "attributes", None) for r in records]
    if any(a is None for a in attrs):
        return gt, None
    return gt, np.stack([np.asarray(a, np.int64).reshape(len(ATTRIBUTES)) for a in attrs])


def _result(pred: np.ndarray, records: Sequence[Any], threshold: float, source: Dict[str, Any],
            box: str, spec: CropSpec, timing: Dict[str, Any]) -> Dict[str, Any]:
    gt, attrs = _stack(records)
    return {
        "metrics": metrics.summarize(pred, gt, attrs, threshold=threshold),
        "nmes": metrics.nme(pred, gt),
        "pred": pred.astype(np.float32),
        "gt": gt,
        "attributes": attrs,
        "images": [image_path(r) for r in records],
        "source": source,
        "box": box,
        "spec": spec.to_dict(),
        "timing": timing,
    }


def evaluate(backend: Any, records: Sequence[Any], spec: Optional[CropSpec] = None, batch_size: int = 32,
             box: str = "landmarks", progress: Progress = None,
             threshold: float = metrics.DEFAULT_THRESHOLD, workers: int = 2) -> Dict[str, Any]:
    """Run `backend` on every face of `records` and score it (WFLW protocol).

    Returns a dict: "metrics" (runtime.metrics.summarize), "nmes" (N,) per-face NME,
    "pred" (N, 98, 2) frame pixels, "gt", "attributes", "images", "source"
    (backend.info()), "box", "spec" and "timing" (wall and inference seconds).
    `progress(n)` is called with the number of faces finished in each batch (so
    `tqdm(...).update` fits). `spec` defaults to the backend's crop spec. A backend
    with a fixed batch (VART) gets full batches; the last one is zero-padded.
    Images are decoded by `workers` threads (OpenCV releases the GIL) while the
    backend runs.
    """
    if not len(records):
        raise ValueError("no faces to evaluate")
    if box not in BOX_SOURCES:
        raise ValueError("box must be one of %s, got %r" % (", ".join(BOX_SOURCES), box))
    spec = spec or getattr(backend, "spec", DEFAULT_SPEC)
    backend_spec = getattr(backend, "spec", spec)
    if backend_spec.size != spec.size:
        raise ValueError("crop size %d differs from the backend's %d" % (spec.size, backend_spec.size))
    fixed = backend.batch_size
    bsz = int(fixed or batch_size)
    if bsz < 1:
        raise ValueError("batch_size must be >= 1, got %r" % (bsz,))

    n = len(records)
    buf = np.zeros((bsz, spec.size, spec.size), np.uint8)
    pred = np.empty((n, NUM_POINTS, 2), np.float32)
    affines: List[np.ndarray] = []

    def load_and_crop(record: Any) -> Tuple[np.ndarray, np.ndarray]:
        crop, m = crop_face(load_image(record), face_box(record, box), spec)
        return crop, m

    t0 = time.perf_counter()
    infer_s = 0.0
    pool = ThreadPoolExecutor(max_workers=max(1, int(workers)))
    pending: Deque[Future] = deque()
    queued = 0
    try:
        start = 0
        while start < n:
            # keep about two batches decoding ahead; bounded so an error stops work quickly
            while queued < n and queued < start + 2 * bsz:
                pending.append(pool.submit(load_and_crop, records[queued]))
                queued += 1
            count = min(bsz, n - start)
            for i in range(count):
                buf[i], m = pending.popleft().result()
                affines.append(m)
            if fixed and count < bsz:
                buf[count:] = 0
            t1 = time.perf_counter()
            out = backend.infer(buf if fixed else buf[:count])
            infer_s += time.perf_counter() - t1
            out = np.asarray(out, np.float32).reshape(-1, NUM_POINTS, 2)
            for i in range(count):
                pred[start + i] = to_frame(out[i], affines[start + i], spec.size)
            start += count
            if progress is not None:
                progress(count)
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)
    wall = time.perf_counter() - t0
    timing = {"faces": n, "batch": bsz, "wall_s": wall, "infer_s": infer_s,
              "infer_ms_per_face": 1000.0 * infer_s / n, "faces_per_s": n / wall if wall > 0 else None}
    info = backend.info() if hasattr(backend, "info") else {"backend": type(backend).__name__}
    return _result(pred, records, threshold, info, box, spec, timing)


def mean_shape(train_records: Sequence[Any], spec: CropSpec = DEFAULT_SPEC) -> np.ndarray:
    """Mean crop-normalised (98, 2) training shape, each face cropped from its landmarks' box."""
    if not len(train_records):
        raise ValueError("no training faces for the mean shape")
    acc = np.zeros((NUM_POINTS, 2), np.float64)
    for r in train_records:
        m = crop_affine(box_from_landmarks(r.landmarks), spec)
        acc += to_crop_normalised(np.asarray(r.landmarks, np.float64).reshape(NUM_POINTS, 2), m, spec.size)
    return (acc / len(train_records)).astype(np.float32)


def mean_shape_baseline(train_records: Sequence[Any], test_records: Sequence[Any],
                        spec: CropSpec = DEFAULT_SPEC, box: str = "landmarks",
                        threshold: float = metrics.DEFAULT_THRESHOLD) -> Dict[str, Any]:
    """Score "predict the mean training shape in every crop": what a model that learnt nothing gets.

    Same crop boxes and decoding as `evaluate`, so the numbers are directly comparable
    (with landmark boxes this baseline already knows each face's extent, which is
    why it is far from hopeless). Needs no images.
    """
    if not len(test_records):
        raise ValueError("no faces to evaluate")
    t0 = time.perf_counter()
    shape = mean_shape(train_records, spec)
    pred = np.stack([to_frame(shape, crop_affine(face_box(r, box), spec), spec.size) for r in test_records])
    wall = time.perf_counter() - t0
    timing = {"faces": len(test_records), "batch": None, "wall_s": wall, "infer_s": 0.0,
              "infer_ms_per_face": 0.0, "faces_per_s": None}
    source = {"backend": "mean_shape", "path": None, "train_faces": len(train_records)}
    return _result(pred, test_records, threshold, source, box, spec, timing)


def summary(result: Dict[str, Any]) -> Dict[str, Any]:
    """JSON-ready part of an `evaluate` result: metrics, source, box, spec, timing (no arrays)."""
    out = dict(result["metrics"])
    out.update(source=result["source"], box=result["box"], spec=result["spec"], timing=result["timing"])
    return out
