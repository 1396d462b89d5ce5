"""Crop cache: every face is decoded and cropped ONCE, with runtime.preprocess.crop_face.

Decoding JPEGs and cropping every epoch would dominate a CPU training step, so crops are
stored as uint8 .npy arrays (memory-mapped on load) in a cache directory keyed by the data
root, the annotation list's content, the selected lines and the crop contract.

Why a margin: augmentation rotates, scales and shifts the crop window. Re-cropping a
112-px crop would bring black corners in, so the cache holds a LARGER window at the SAME
pixel size: side `cache_margin` x the contract's window, `size_c = 112 * margin` pixels
(rounded so that the border `offset = (size_c - 112) / 2` is a whole number of pixels).
The contract's crop is then exactly the centre `[offset:offset+112]` of the cached crop —
the same frame samples crop_face would take (tests/keras_flm/test_pipeline.py checks it).

Landmarks are stored in cached-crop pixels; Euler labels (degrees) are computed with
runtime.headpose on the contract crop's pixel coordinates (a 112-px camera).
"""
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from runtime.evaluate import crop_affine
from runtime.headpose import euler_from_landmarks
from runtime.json_files import read_json
from runtime.preprocess import CropSpec, box_from_landmarks, crop_face, to_crop_normalised
from runtime.wflw import FaceRecord, annotation_path, load_image

#: Bump when the cache layout or what goes into it changes.
CACHE_FORMAT = 1
ARRAYS = ("images", "landmarks", "euler", "attributes", "lines")


def default_cache_dir() -> str:
    return os.environ.get("FLM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "flm", "crops")


def cache_spec(spec: CropSpec, margin: float) -> Tuple[CropSpec, int]:
    """(CropSpec of the cached window, offset in pixels of the contract crop inside it)."""
    if margin < 1.0:
        raise ValueError("cache margin must be >= 1, got %r" % (margin,))
    offset = int(round(spec.size * (margin - 1.0) / 2.0))
    size = spec.size + 2 * offset
    return replace(spec, size=size, scale=spec.scale * size / spec.size), offset


@dataclass
class CropCache:
    """Cached crops of one list of faces (arrays may be memory-mapped)."""

    images: np.ndarray  # (N, S, S) uint8, S = cache size
    landmarks: np.ndarray  # (N, 98, 2) float32, cached-crop pixels
    euler: np.ndarray  # (N, 3) float32 degrees (pitch, yaw, roll) on the contract crop
    attributes: np.ndarray  # (N, 6) int8
    lines: np.ndarray  # (N,) int32 line numbers in the annotation list
    rel_paths: List[str]
    meta: Dict

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def offset(self) -> int:
        return int(self.meta["offset"])

    @property
    def crop_size(self) -> int:
        return int(self.meta["crop"]["size"])

    def take(self, index: Sequence[int]) -> "CropCache":
        idx = np.asarray(index, dtype=np.int64)
        return CropCache(np.asarray(self.images[idx]), self.landmarks[idx], self.euler[idx],
                         self.attributes[idx], self.lines[idx], [self.rel_paths[i] for i in idx],
                         dict(self.meta, count=int(idx.size)))

    def contract_crops(self) -> Tuple[np.ndarray, np.ndarray]:
        """Un-augmented contract crops (N, 112, 112) uint8 and crop-normalised landmarks (N, 98, 2)."""
        o, n = self.offset, self.crop_size
        crops = np.ascontiguousarray(self.images[:, o:o + n, o:o + n])
        return crops, ((self.landmarks - o) / n).astype(np.float32)


#: What two caches must share to be trained on together: the contract crop and the cached window.
_GEOMETRY = ("crop", "cache_crop", "offset")


def _cache_name(cache: CropCache) -> str:
    return str(cache.meta.get("path") or cache.meta.get("root") or "<cache>")


def concat_caches(caches: Sequence[CropCache]) -> CropCache:
    """One in-memory cache of several caches' faces, in order (e.g. a root's training split plus the
    train lists of extra roots, `flm train --extra-train`).

    The pipeline re-crops every face with one geometry, so caches cut with another crop spec or
    margin are refused (ValueError naming both). `lines` stay each list's own line numbers: they only
    matter for the validation matching done before concatenating. The first cache's meta is kept,
    with the count and the parts' paths.
    """
    if not caches:
        raise ValueError("no caches to concatenate")
    first = caches[0]
    for other in caches[1:]:
        for key in _GEOMETRY:
            if first.meta.get(key) != other.meta.get(key):
                raise ValueError("cannot concatenate crop caches with different %s: %s has %r, %s has %r "
                                 "(same crop spec and cache margin needed)"
                                 % (key, _cache_name(first), first.meta.get(key), _cache_name(other),
                                    other.meta.get(key)))
    if len(caches) == 1:
        return first
    meta = dict(first.meta, count=int(sum(len(c) for c in caches)),
                parts=[c.meta.get("path") for c in caches])
    return CropCache(np.concatenate([np.asarray(c.images) for c in caches]),
                     np.concatenate([np.asarray(c.landmarks) for c in caches]),
                     np.concatenate([np.asarray(c.euler) for c in caches]),
                     np.concatenate([np.asarray(c.attributes) for c in caches]),
                     np.concatenate([np.asarray(c.lines) for c in caches]),
                     [p for c in caches for p in c.rel_paths], meta)


def cache_key(root: str, split: str, records: Sequence[FaceRecord], spec: CropSpec, margin: float) -> str:
    """Hash of everything the cached arrays depend on."""
    list_path = annotation_path(root, split)
    h = hashlib.sha1()
    with open(list_path, "rb") as f:
        h.update(f.read())
    payload = {"format": CACHE_FORMAT, "root": os.path.abspath(str(root)), "split": split,
               "list_sha1": h.hexdigest(), "lines": [r.line for r in records],
               "crop": spec.to_dict(), "margin": margin}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def label_euler(landmarks: np.ndarray, spec: CropSpec) -> Tuple[float, float, float]:
    """(pitch, yaw, roll) degrees of a face's labels on its contract crop: the angles the cache
    stores, the PFLD loss weighs and `--oversample yaw>=D` selects by (runtime.headpose)."""
    affine = crop_affine(box_from_landmarks(landmarks), spec)
    pts = to_crop_normalised(landmarks, affine, spec.size) * spec.size
    return euler_from_landmarks(pts, (spec.size, spec.size))


def _crop_one(record: FaceRecord, spec: CropSpec, cspec: CropSpec
              ) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float, float]]:
    frame = load_image(record)
    box = box_from_landmarks(record.landmarks)
    # The cached window shares the contract window's centre (the landmark box centre).
    crop, affine = crop_face(frame, box, cspec)
    pts = to_crop_normalised(record.landmarks, affine, cspec.size) * cspec.size
    try:
        euler = label_euler(record.landmarks, spec)
    except ValueError as e:
        raise ValueError("%s: head pose failed: %s" % (record.where(), e)) from None
    return crop, pts.astype(np.float32), euler


def build_cache(records: Sequence[FaceRecord], root: str, split: str, spec: CropSpec, margin: float,
                cache_dir: Optional[str] = None, progress: bool = True, workers: int = 2) -> CropCache:
    """Load the cache for these records, or crop them all once and write it (atomically)."""
    if not records:
        raise ValueError("no records to cache")
    cspec, offset = cache_spec(spec, margin)
    key = cache_key(root, split, records, spec, margin)
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, "%s-%s" % (split, key))
    if os.path.isfile(os.path.join(path, "meta.json")):
        return load_cache(path)

    n, s = len(records), cspec.size
    images = np.empty((n, s, s), np.uint8)
    landmarks = np.empty((n, 98, 2), np.float32)
    euler = np.empty((n, 3), np.float32)
    bar = _progress(n, "caching %s crops (%dpx, margin %.2f)" % (split, s, margin), progress)
    with ThreadPoolExecutor(max(1, workers)) as pool:  # cv2 decode/warp release the GIL
        for i, (crop, pts, eul) in enumerate(pool.map(lambda r: _crop_one(r, spec, cspec), records)):
            images[i], landmarks[i], euler[i] = crop, pts, eul
            bar.update(1)
    bar.close()
    meta = {"format": CACHE_FORMAT, "key": key, "root": os.path.abspath(str(root)), "split": split,
            "count": n, "crop": spec.to_dict(), "cache_crop": cspec.to_dict(), "margin": margin,
            "offset": offset, "rel_paths": [r.rel_path for r in records]}
    arrays = {"images": images, "landmarks": landmarks, "euler": euler,
              "attributes": np.stack([r.attributes for r in records]).astype(np.int8),
              "lines": np.array([r.line for r in records], np.int32)}
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-%s-" % key, dir=cache_dir)
    try:
        for name, arr in arrays.items():
            np.save(os.path.join(tmp, name + ".npy"), arr)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f)
        try:
            os.rename(tmp, path)
        except OSError:  # another process wrote the same cache first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_cache(path)


def load_cache(path: str) -> CropCache:
    meta = read_json(os.path.join(path, "meta.json"))
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError("%s: cache format %r, expected %d (delete it to rebuild)"
                         % (path, meta.get("format"), CACHE_FORMAT))
    arr = {name: np.load(os.path.join(path, name + ".npy"), mmap_mode="r") for name in ARRAYS}
    return CropCache(arr["images"], np.asarray(arr["landmarks"]), np.asarray(arr["euler"]),
                     np.asarray(arr["attributes"]), np.asarray(arr["lines"]), list(meta["rel_paths"]),
                     dict(meta, path=path))


def _progress(total: int, desc: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the train extra; stay usable without it
        enabled = False
    if not enabled:
        class _Null:
            def update(self, n: int) -> None:
                pass

            def close(self) -> None:
                pass
        return _Null()
    return tqdm(total=total, desc=desc, unit="face", mininterval=1.0)
