"""Board bundles: a directory with meta.json (crop contract + file names) and model files.

`flm vitis bundle` writes it (format "flm-bundle" v1, documented in vitis/bundle.py);
`flm-dpu --model DIR` reads it. This loader needs only "crop" (a CropSpec dict, so the
board crops exactly as training did) and a model: "models" ({backend: file}) or "model"
(one file); without those the directory is scanned by suffix. When meta.json lists
"files" with md5 sums, the model file about to run is checked against its sum (a
truncated copy to the board fails here, not as a strange runtime error).
Which file runs: --backend if given, else the DPU xmodel when the Vitis AI runtime is
importable, else the first of ONNX, TFLite, Keras H5 present.
"""
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from runtime.backends.base import BackendError
from runtime.json_files import read_json
from runtime.preprocess import DEFAULT_SPEC, CropSpec

META = "meta.json"
#: The record `flm vitis compile` writes beside its xmodel (and in run/vitis/): md5, fix positions,
#: the head's output offset. VartBackend reads it when no bundle meta.json is there.
COMPILE_RECORD = "compile.json"
FORMAT = "flm-bundle"
FORMAT_VERSION = 1
SUFFIXES = {".xmodel": "vart", ".onnx": "onnx", ".tflite": "tflite", ".h5": "keras", ".keras": "keras"}
#: Host preference when no DPU runtime is present (fastest CPU engine first).
HOST_ORDER = ("onnx", "tflite", "keras")


@dataclass
class Bundle:
    root: str
    meta: Dict[str, Any]
    spec: CropSpec
    files: Dict[str, str] = field(default_factory=dict)  # backend -> absolute model path

    def model_for(self, backend: Optional[str] = None) -> str:
        """Model file for a backend (or the preferred one)."""
        name = backend or preferred_backend(self.files)
        if name not in self.files:
            have = ", ".join("%s=%s" % (k, os.path.basename(v)) for k, v in sorted(self.files.items()))
            raise BackendError("bundle %s has no model for backend %r (it has: %s)"
                               % (self.root, name, have or "none"))
        path = self.files[name]
        self.verify(path)
        return path

    @property
    def fingerprint(self) -> Optional[str]:
        """DPU fingerprint the xmodel was compiled for (the board's `xdputil query` must match)."""
        dpu = self.meta.get("dpu")
        return dpu.get("fingerprint") if isinstance(dpu, dict) else None

    def verify(self, path: str) -> None:
        """Check a model file against the md5 meta.json records for it (if any)."""
        rec = (self.meta.get("files") or {}).get(os.path.relpath(path, self.root))
        want = rec.get("md5") if isinstance(rec, dict) else None
        if not want:
            return
        got = file_md5(path)
        if got != want:
            raise BackendError("%s is corrupt or was changed: md5 %s, but %s records %s (copy the bundle "
                               "again)"
                               % (path, got, os.path.join(self.root, META), want))


def file_digest(path: str, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB blocks (md5: the sums meta.json records for bundles and
    releases; sha256: quant.json's artifact fingerprints)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path: str) -> str:
    return file_digest(path, "md5")


def vitis_runtime_present() -> bool:
    try:
        import vart  # noqa: F401
        import xir  # noqa: F401
    except ImportError:
        return False
    return True


def preferred_backend(files: Dict[str, str]) -> str:
    if "vart" in files and vitis_runtime_present():
        return "vart"
    for name in HOST_ORDER:
        if name in files:
            return name
    if "vart" in files:
        return "vart"  # let the vart backend explain that the Vitis AI runtime is missing
    raise BackendError("no model file found")


def is_bundle(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, META))


def read_json_object(path: str) -> Dict[str, Any]:
    """The runtime's reader of the records flm writes beside models (meta.json, compile.json): a JSON
    object, or a BackendError naming the file and line."""
    try:
        data = read_json(path)
    except ValueError as e:
        raise BackendError(str(e)) from None
    except OSError as e:
        raise BackendError("cannot read %s: %s" % (path, e)) from e
    if not isinstance(data, dict):
        raise BackendError("%s must hold a JSON object, got %s" % (path, type(data).__name__))
    return data


def load_bundle(root: str) -> Bundle:
    """Read meta.json and locate the model files; errors name the file and the problem."""
    meta_path = os.path.join(root, META)
    if not os.path.isdir(root):
        raise BackendError("bundle directory not found: %s" % root)
    if not os.path.isfile(meta_path):
        raise BackendError("%s is a directory but not a board bundle: %s is missing (make one with "
                           "`flm vitis bundle`, or pass a model file)" % (root, META))
    meta = read_json_object(meta_path)
    fmt, ver = meta.get("format"), meta.get("format_version")
    if fmt is not None and fmt != FORMAT:
        raise BackendError("%s: format %r is not an flm bundle (%r)" % (meta_path, fmt, FORMAT))
    if isinstance(ver, int) and ver > FORMAT_VERSION:
        raise BackendError("%s: bundle format version %d is newer than this runtime reads (%d): update flm"
                           % (meta_path, ver, FORMAT_VERSION))
    crop = meta.get("crop")
    if not isinstance(crop, dict):
        raise BackendError("%s has no \"crop\" object (the CropSpec the model was trained with)" % meta_path)
    try:
        spec = CropSpec.from_dict(crop)
    except (TypeError, ValueError) as e:
        raise BackendError("%s: bad \"crop\" %r: %s" % (meta_path, crop, e)) from e
    if spec.version != DEFAULT_SPEC.version:
        raise BackendError("%s: crop contract version %s, this runtime implements version %s"
                           % (meta_path, spec.version, DEFAULT_SPEC.version))
    files = {}  # type: Dict[str, str]
    named = []
    if isinstance(meta.get("models"), dict):
        named = [(k, v) for k, v in meta["models"].items()]
    for key in ("model", "xmodel"):
        if isinstance(meta.get(key), str):
            named.append((None, meta[key]))
    for backend, rel in named:
        p = os.path.join(root, rel)
        if not os.path.isfile(p):
            raise BackendError("%s names model %r, but %s does not exist" % (meta_path, rel, p))
        name = backend or SUFFIXES.get(os.path.splitext(p)[1].lower())
        if name is None:
            raise BackendError("%s: cannot tell the backend of %r from its suffix" % (meta_path, rel))
        files.setdefault(name, p)
    if not files:
        for fn in sorted(os.listdir(root)):
            name = SUFFIXES.get(os.path.splitext(fn)[1].lower())
            if name and name not in files:
                files[name] = os.path.join(root, fn)
    if not files:
        raise BackendError("bundle %s has no model file (%s)" % (root, ", ".join(sorted(SUFFIXES))))
    return Bundle(root=root, meta=meta, spec=spec, files=files)
