"""Foreign ONNX landmark models (e.g. a PFLD-pytorch export) behind flm's Backend interface.

TF-centric teams want to put their Keras/TFLite/DPU models beside the PyTorch flow's export
in one table: same crops, same metrics, same timing loop. A foreign model differs from flm's
contract in ways an input/output spec describes (`ForeignSpec`):

- input: channels 1 or 3, size (the 112-px crop is resized when it differs), layout NCHW or NHWC,
  normalisation of the uint8 pixel ("0-1", "-1-1", "imagenet", "u8-128/128", "u8-M/S", "0-255");
- output: which output tensor (PFLD-pytorch exports two: a feature tensor and the landmarks),
  its layout ("flat"/"pairs" = x0, y0, x1, y1, ...; "planar" = x0..x97, y0..y97) and its
  coordinate frame ("crop01" = [0, 1] of the crop, "pixels" of the model's input size, "-1-1").

The backend receives exactly the crops flm's own backends get (`runtime.preprocess.crop_face`:
grayscale uint8 112x112). A 3-channel model therefore sees the gray crop replicated into all
three channels: a colour-trained model is evaluated on gray input (usually a small handicap,
stated in every report row that uses it). Everything is preallocated per batch size: a call
allocates only the engine's output.

numpy + OpenCV (+ onnxruntime when a model is loaded); Python 3.8 syntax.
"""
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from runtime.backends.base import Backend, BackendError
from runtime.backends.onnx_backend import make_session
from runtime.landmarks import NUM_POINTS
from runtime.preprocess import DEFAULT_SPEC, CropSpec

LAYOUTS = ("nchw", "nhwc")
OUT_LAYOUTS = ("flat", "pairs", "planar")
FRAMES = ("crop01", "pixels", "-1-1")
#: Named normalisations as (mean, scale) on the uint8 pixel: x = (u8 - mean) * scale.
NORMS = {
    "0-1": (0.0, 1.0 / 255.0),
    "-1-1": (127.5, 1.0 / 127.5),
    "0-255": (0.0, 1.0),
    "u8-128/128": (128.0, 1.0 / 128.0),  # flm's own contract
}
#: torchvision's ImageNet statistics (RGB) on [0, 1] pixels; gray replicated into each channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_U8_NORM = re.compile(r"^u8-([0-9.eE+-]+)/([0-9.eE+-]+)$")
#: Keys that may be left unset (or "auto"): read from the model.
_AUTO_KEYS = ("channels", "size", "layout", "output")
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}

SPEC_HELP = ("Input/output spec of a foreign ONNX landmark model: key=value pairs separated by commas, or a "
             "JSON object / .json file. Keys: channels=1|3, size=N, norm=0-1|-1-1|imagenet|0-255|u8-128/128|"
             "u8-MEAN/DIVISOR, layout=nchw|nhwc, out=flat|pairs|planar, frame=crop01|pixels|-1-1, "
             "output=INDEX|NAME. Unset: channels, size and layout are read from the model, output is the one "
             "with 196 values, norm=0-1, out=flat, frame=crop01 (PFLD-pytorch's conventions). PFLD-pytorch: "
             "\"channels=3,size=112,norm=0-1,layout=nchw,out=flat,frame=crop01,output=1\"")


def parse_norm(norm: str) -> Tuple[str, Optional[Tuple[float, float]]]:
    """Validate a normalisation name; return (name, (mean, scale)) or (name, None) for imagenet."""
    if norm == "imagenet":
        return norm, None
    if norm in NORMS:
        return norm, NORMS[norm]
    m = _U8_NORM.match(norm)
    if m:
        try:
            mean, div = float(m.group(1)), float(m.group(2))
        except ValueError:
            mean, div = float("nan"), 0.0
        if np.isfinite(mean) and np.isfinite(div) and div != 0:
            return norm, (mean, 1.0 / div)
    raise ValueError("foreign spec: norm=%r is not one of %s, imagenet or u8-MEAN/DIVISOR (e.g. u8-127.5/128)"
                     % (norm, ", ".join(NORMS)))


@dataclass(frozen=True)
class ForeignSpec:
    """How a foreign model's input is made from a uint8 gray crop and how its output is read.

    None means "read it from the model" (channels, size, layout) or "the output with 196
    values per face" (output). Defaults for norm/out/frame are PFLD-pytorch's conventions.
    """

    channels: Optional[int] = None
    size: Optional[int] = None
    norm: str = "0-1"
    layout: Optional[str] = None
    out: str = "flat"
    frame: str = "crop01"
    output: Optional[str] = None

    def __post_init__(self) -> None:
        if self.channels is not None and self.channels not in (1, 3):
            raise ValueError("foreign spec: channels=%r must be 1 or 3" % (self.channels,))
        if self.size is not None and not (isinstance(self.size, int) and 8 <= self.size <= 4096):
            raise ValueError("foreign spec: size=%r must be an integer in [8, 4096]" % (self.size,))
        parse_norm(self.norm)
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ValueError("foreign spec: layout=%r must be one of %s" % (self.layout, ", ".join(LAYOUTS)))
        if self.out not in OUT_LAYOUTS:
            raise ValueError("foreign spec: out=%r must be one of %s" % (self.out, ", ".join(OUT_LAYOUTS)))
        if self.frame not in FRAMES:
            raise ValueError("foreign spec: frame=%r must be one of %s" % (self.frame, ", ".join(FRAMES)))
        if self.output is not None and (not isinstance(self.output, str) or not self.output):
            raise ValueError("foreign spec: output=%r must be an output index or name" % (self.output,))

    @classmethod
    def keys(cls) -> List[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ForeignSpec":
        """From a dict of key -> value (strings or JSON values); unknown keys raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError("foreign spec: expected a JSON object of key/value pairs, got %r" % (d,))
        known = cls.keys()
        kw = {}  # type: Dict[str, Any]
        for key, value in d.items():
            k = str(key).strip().lower()
            if k not in known:
                raise ValueError("foreign spec: unknown key %r (known keys: %s)" % (key, ", ".join(known)))
            if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
                if k in _AUTO_KEYS:
                    continue  # read from the model
                raise ValueError("foreign spec: %s=%r needs a value (only %s can be auto)"
                                 % (k, value, ", ".join(_AUTO_KEYS)))
            if k in ("channels", "size"):
                try:
                    if isinstance(value, bool) or float(value) != int(float(value)):
                        raise ValueError
                    kw[k] = int(float(value))
                except (TypeError, ValueError):
                    raise ValueError("foreign spec: %s=%r is not an integer" % (k, value)) from None
            elif k == "output":
                kw[k] = str(value).strip()
            else:
                kw[k] = str(value).strip().lower()
        return cls(**kw)

    @classmethod
    def parse(cls, text: str) -> "ForeignSpec":
        """From "key=value,key=value", a JSON object, or the path of a .json file holding one."""
        if text is None:
            return cls()
        s = str(text).strip()
        if not s:
            return cls()
        if s.startswith("{") or (s.lower().endswith(".json") and os.path.isfile(s)):
            where = "JSON"
            if not s.startswith("{"):
                where = s
                with open(s, encoding="utf-8") as f:
                    s = f.read()
            try:
                return cls.from_dict(json.loads(s))
            except json.JSONDecodeError as e:
                raise ValueError("foreign spec: %s is not valid JSON (line %d column %d): %s"
                                 % (where, e.lineno, e.colno, e.msg)) from None
        d = {}  # type: Dict[str, str]
        for part in s.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ValueError("foreign spec: %r is not key=value (known keys: %s)"
                                 % (part, ", ".join(cls.keys())))
            k, v = part.split("=", 1)
            if k.strip().lower() in d:
                raise ValueError("foreign spec: key %r given twice" % k.strip())
            d[k.strip().lower()] = v.strip()
        return cls.from_dict(d)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def compact(self) -> str:
        """The spec as the compact string `parse` reads (unset fields left out)."""
        return ",".join("%s=%s" % (k, v) for k, v in asdict(self).items() if v is not None)


def channel_luts(norm: str, channels: int, dtype: Any = np.float32) -> np.ndarray:
    """(channels, 256) uint8 pixel -> model input value for each input channel.

    imagenet on a 1-channel model uses the mean of the three channels' statistics."""
    _, affine = parse_norm(norm)
    u8 = np.arange(256, dtype=np.float64)
    if affine is None:  # imagenet: per-channel statistics on [0, 1]
        mean = np.asarray(IMAGENET_MEAN[:channels] if channels == 3 else [np.mean(IMAGENET_MEAN)])
        std = np.asarray(IMAGENET_STD[:channels] if channels == 3 else [np.mean(IMAGENET_STD)])
        lut = (u8[None, :] / 255.0 - mean[:, None]) / std[:, None]
    else:
        lut = np.repeat(((u8 - affine[0]) * affine[1])[None, :], channels, axis=0)
    return lut.astype(dtype)


def decode_output(values: np.ndarray, out: str, frame: str, size: int) -> np.ndarray:
    """(N, 196) raw model output -> (N, 196) x0, y0, x1, y1, ... in crop-normalised [0, 1]."""
    y = np.asarray(values, np.float32).reshape(len(values), -1)
    if y.shape[1] != 2 * NUM_POINTS:
        raise BackendError("foreign model output has %d values per face; a 98-point landmark model "
                           "gives %d (check output=)" % (y.shape[1], 2 * NUM_POINTS))
    if out == "planar":
        y = np.ascontiguousarray(y.reshape(len(y), 2, NUM_POINTS).transpose(0, 2, 1)).reshape(len(y), -1)
    if frame == "pixels":
        y = y * np.float32(1.0 / size)
    elif frame == "-1-1":
        y = (y + np.float32(1.0)) * np.float32(0.5)
    return y


def _static(dim: Any) -> Optional[int]:
    return dim if isinstance(dim, int) and dim > 0 else None


def _values_per_face(shape: List[Any]) -> Optional[int]:
    dims = [_static(d) for d in shape[1:]]
    return int(np.prod(dims)) if dims and all(dims) else None


class ForeignOnnxBackend(Backend):
    """ONNX Runtime on a foreign landmark model, fed flm's crops through a `ForeignSpec`."""

    name = "onnx-foreign"

    def __init__(self, path: str, foreign: Optional[ForeignSpec] = None, spec: CropSpec = DEFAULT_SPEC,
                 threads: Optional[int] = None) -> None:
        super().__init__(path, spec)
        self.session = make_session(path, threads, "the foreign ONNX backend")
        self.threads = threads
        self.requested = foreign or ForeignSpec()
        self.foreign = self._resolve(self.requested)
        f = self.foreign
        self.dtype = _DTYPES[self.input_type]
        self._luts = channel_luts(f.norm, f.channels, self.dtype)
        self._same_luts = bool(np.all(self._luts == self._luts[:1]))
        self._bufs = {}  # type: Dict[int, np.ndarray]
        self._resized = {}  # type: Dict[int, np.ndarray]
        self._interp = cv2.INTER_AREA if f.size < spec.size else cv2.INTER_LINEAR

    # ------------------------------------------------------------------ load-time checks
    def _resolve(self, want: ForeignSpec) -> ForeignSpec:
        """Fill channels/size/layout/output from the model; fail naming the spec key that disagrees."""
        inp = self.session.get_inputs()[0]
        if len(self.session.get_inputs()) != 1:
            raise BackendError("%s has %d inputs (%s); a landmark model takes one image"
                               % (self.path, len(self.session.get_inputs()),
                                  ", ".join(i.name for i in self.session.get_inputs())))
        if inp.type not in _DTYPES:
            raise BackendError("%s: input %s is %s; the foreign backend feeds float input (%s)"
                               % (self.path, inp.name, inp.type, ", ".join(_DTYPES)))
        shape = list(inp.shape)
        if len(shape) != 4:
            raise BackendError("%s: input %s has shape %s; expected a 4-D image batch (NCHW or NHWC)"
                               % (self.path, inp.name, shape))
        layout = want.layout
        if layout is None:
            first, last = _static(shape[1]), _static(shape[3])
            if first in (1, 3) and last not in (1, 3):
                layout = "nchw"
            elif last in (1, 3) and first not in (1, 3):
                layout = "nhwc"
            else:
                raise BackendError("%s: cannot tell the layout of input %s %s; add layout=nchw or "
                                   "layout=nhwc to the foreign spec" % (self.path, inp.name, shape))
        order = (1, 2, 3) if layout == "nchw" else (3, 1, 2)
        c_dim, h_dim, w_dim = (shape[i] for i in order)
        channels = want.channels or _static(c_dim)
        if channels is None:
            raise BackendError("%s: input %s %s has no static channel dimension; add channels=1|3 to the "
                               "foreign spec" % (self.path, inp.name, shape))
        if _static(c_dim) is not None and _static(c_dim) != channels:
            raise BackendError("%s: foreign spec channels=%d but input %s %s has %d channels (layout %s)"
                               % (self.path, channels, inp.name, shape, c_dim, layout))
        if channels not in (1, 3):
            raise BackendError("%s: input %s %s has %d channels (layout %s); the foreign backend feeds 1 or "
                               "3 (is layout= right?)" % (self.path, inp.name, shape, channels, layout))
        h, w = _static(h_dim), _static(w_dim)
        if h is not None and w is not None and h != w:
            raise BackendError("%s: input %s %s is not square (%dx%d); flm crops are square"
                               % (self.path, inp.name, shape, h, w))
        size = want.size or h or w or self.spec.size
        if h is not None and h != size:
            raise BackendError("%s: foreign spec size=%d but input %s %s is %d px (layout %s)"
                               % (self.path, size, inp.name, shape, h, layout))
        outs = self.session.get_outputs()
        self.output_index = self._pick_output(outs, want.output)
        self.input_name = inp.name
        self.input_type = inp.type
        self.output_name = outs[self.output_index].name
        self._fixed_batch = _static(shape[0])
        return ForeignSpec(channels=channels, size=size, norm=want.norm, layout=layout, out=want.out,
                           frame=want.frame, output=str(self.output_index))

    def _pick_output(self, outs: List[Any], want: Optional[str]) -> int:
        listing = "; ".join("%d: %s %s" % (i, o.name, list(o.shape)) for i, o in enumerate(outs))
        if want is not None:
            if re.match(r"^-?\d+$", want):
                i = int(want)
                if not -len(outs) <= i < len(outs):
                    raise BackendError("%s: foreign spec output=%s but the model has %d output(s) (%s)"
                                       % (self.path, want, len(outs), listing))
                i %= len(outs)
            else:
                names = [o.name for o in outs]
                if want not in names:
                    raise BackendError("%s: foreign spec output=%r names no output (%s)"
                                       % (self.path, want, listing))
                i = names.index(want)
            n = _values_per_face(list(outs[i].shape))
            if n is not None and n != 2 * NUM_POINTS:
                raise BackendError("%s: output %d (%s) has %d values per face, not %d (outputs: %s)"
                                   % (self.path, i, outs[i].name, n, 2 * NUM_POINTS, listing))
            return i
        if len(outs) == 1:
            return 0
        hits = [i for i, o in enumerate(outs) if _values_per_face(list(o.shape)) == 2 * NUM_POINTS]
        if len(hits) != 1:
            raise BackendError("%s has %d outputs (%s) and %s of them has %d values per face: add "
                               "output=INDEX to the foreign spec" % (self.path, len(outs), listing,
                                                                    "none" if not hits else "more than one",
                                                                    2 * NUM_POINTS))
        return hits[0]

    # ------------------------------------------------------------------ serving
    @property
    def batch_size(self) -> Optional[int]:
        return self._fixed_batch

    def info(self) -> Dict[str, Any]:
        d = super().info()
        d.update(input=self.input_name, input_type=self.input_type, output=self.output_name,
                 foreign_spec=self.foreign.compact(), threads=self.threads or "default")
        if self.foreign.channels == 3:
            d["note"] = "gray crop replicated into 3 channels"
        return d

    def _input(self, crops_u8: np.ndarray) -> np.ndarray:
        f = self.foreign
        n, size = len(crops_u8), int(f.size)  # type: ignore[arg-type]
        src = crops_u8
        if size != crops_u8.shape[1]:
            src = self._resized.get(n)
            if src is None:
                src = self._resized[n] = np.empty((n, size, size), np.uint8)
            for i in range(n):
                cv2.resize(crops_u8[i], (size, size), dst=src[i], interpolation=self._interp)
        buf = self._bufs.get(n)
        if buf is None:  # one buffer per batch size seen: no per-call allocation after warm-up
            shape = (n, f.channels, size, size) if f.layout == "nchw" else (n, size, size, f.channels)
            buf = self._bufs[n] = np.empty(shape, self.dtype)
        if f.layout == "nchw":
            np.take(self._luts[0], src, out=buf[:, 0])
            for c in range(1, int(f.channels)):  # type: ignore[arg-type]
                if self._same_luts:
                    buf[:, c] = buf[:, 0]
                else:
                    np.take(self._luts[c], src, out=buf[:, c])
        else:
            for c in range(int(f.channels)):  # type: ignore[arg-type]
                np.take(self._luts[c], src, out=buf[..., c])
        return buf

    def _run(self, crops_u8: np.ndarray) -> np.ndarray:
        b = self._fixed_batch
        if b and len(crops_u8) != b:
            return np.concatenate([self._run_fixed(crops_u8[i:i + b]) for i in range(0, len(crops_u8), b)])
        return self._decode(self.session.run([self.output_name], {self.input_name: self._input(crops_u8)})[0],
                            len(crops_u8))

    def _run_fixed(self, chunk: np.ndarray) -> np.ndarray:
        k, b = len(chunk), int(self._fixed_batch)  # type: ignore[arg-type]
        if k < b:
            chunk = np.concatenate([chunk, np.zeros((b - k,) + chunk.shape[1:], np.uint8)])
        y = self.session.run([self.output_name], {self.input_name: self._input(chunk)})[0]
        return self._decode(y, b)[:k]

    def _decode(self, y: np.ndarray, n: int) -> np.ndarray:
        f = self.foreign
        return decode_output(np.asarray(y).reshape(n, -1), f.out, f.frame, int(f.size))  # type: ignore[arg-type]


def load_foreign(path: str, foreign: Any = None, spec: CropSpec = DEFAULT_SPEC,
                 threads: Optional[int] = None, mirror: bool = False) -> Backend:
    """A ForeignOnnxBackend from a path and a ForeignSpec or spec string; BackendError on a bad spec.
    `mirror`: averaged with the mirrored crop (runtime.backends.mirror), as `load_backend` does."""
    if not os.path.isfile(path):
        raise BackendError("foreign model not found: %s" % path)
    if not path.lower().endswith(".onnx"):
        raise BackendError("foreign model %s: only ONNX models are supported (export PyTorch with "
                           "torch.onnx.export)" % path)
    try:
        fs = foreign if isinstance(foreign, ForeignSpec) else ForeignSpec.parse(foreign)
    except ValueError as e:
        raise BackendError(str(e)) from None
    from runtime.backends.mirror import with_mirror

    return with_mirror(ForeignOnnxBackend(path, fs, spec, threads=threads), mirror)


# ---------------------------------------------------------------------- CLI glue
def foreign_spec_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """click decorator adding `--foreign-spec SPEC` (for `flm-dpu run|eval|bench --model foreign.onnx`)."""
    import click

    return click.option("--foreign-spec", "foreign_spec", default=None, metavar="SPEC",
                        help="treat --model as a foreign ONNX landmark model (e.g. a PFLD-pytorch export) "
                             "with this spec. " + SPEC_HELP)(f)


def spec_from_options(foreign_spec: Optional[str]) -> Optional[ForeignSpec]:
    """Parse `--foreign-spec`; None when not given. Raises click.BadParameter naming the bad key/value."""
    if foreign_spec is None:
        return None
    import click

    try:
        return ForeignSpec.parse(foreign_spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--foreign-spec") from None
