"""Board bundle: run/bundle/ (+ run/bundle.tar.gz), everything `flm-dpu` needs on the KV260.

Format "flm-bundle", version 1
------------------------------
A directory holding model files and ``meta.json``; the tarball holds the same directory
under the name ``<run>-bundle/``. Model files:

- ``<net>.xmodel``: the compiled DPU model, when `flm vitis compile` has run
  (from run/vitis/compile.json, md5-checked against the compile record, and refused unless it passes
  `flm vitis check`'s rules: one DPU subgraph, crop-contract input/output -- read with XIR when
  importable, else from the compile record);
- every ``*.onnx`` and ``*.tflite`` in the run directory, so `flm-dpu run --model BUNDLE`
  also works on a host (or a board without the DPU overlay) through ONNX Runtime/TFLite.

``meta.json`` keys (all present; ``null`` where unknown):

format, format_version   "flm-bundle", 1
model_name               Keras model name of the inference model ("pfld")
architecture             {"name": "MobileNetV2-PFLD", "width", "activation", "extra_convs", ...}
                         (the run's ModelConfig)
run                      run directory name
created                  UTC time, ISO 8601
crop                     runtime.preprocess.CropSpec.to_dict(): size, scale, pad_value, version,
                         input_mean, input_scale -- the crop contract the model was trained with
input                    {"shape": [1,112,112,1], "layout": "NHWC", "dtype": "uint8 crop",
                          "normalisation": "(u8 - input_mean) * input_scale",
                          "dpu_fix_point": int|null}  (fix point 7 makes the DPU input u8 - 128)
output                   {"shape": [1,196], "meaning": ..., "dpu_fix_point": int|null,
                          "dpu_offset": float|null}  (the xmodel emits landmarks - dpu_offset:
                          the runtime adds it after dequantizing; vitis.config output_offset)
landmarks                {"scheme": "WFLW-98", "num_points": 98, "outer_eye_corners": [60, 72],
                          "mirror": [98 ints], "regions": {name: [indices]}}
models                   {backend: file}: the file each backend runs -- "vart" (the xmodel),
                         "onnx", "tflite" (INT8 of the xmodel's mode preferred, then
                         ptq_int8, then fp32). runtime/bundle.py picks the backend.
files                    {file: {"md5", "bytes", "backend", "source"}} for every file in the
                         bundle except meta.json itself
dpu                      {"target", "fingerprint", "fingerprint_source", "known_fingerprints",
                          "compiled_from", "dpu_subgraphs", "total_subgraphs", "xmodel_md5"}
                         or null without an xmodel. "fingerprint" is the value the board's DPU
                         must report (`xdputil query`), or VART refuses the model.
accuracy                 {artifact: {metric: number}} from run/metrics.json (host evaluation:
                         "fp32", the power-of-two "pof2" INT8 emulation, TFLite/ONNX INT8 ...),
                         scalar values only; {} if the run has none
accuracy_reference       {"fp32": key|null, "pof2_int8": key|null}: the metrics.json keys of the
                         FP32 model and of the DPU-like power-of-two INT8 emulation
versions                 {"flm", "bundle_format", "python", "numpy", "opencv", "run": {...},
                          "compiler": ...}

A loader must check ``crop.version`` against its runtime.preprocess.CONTRACT_VERSION and may
verify ``files[*].md5``.
"""
import datetime
import os
import platform
import shutil
import tarfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtime.bundle import COMPILE_RECORD, FORMAT, FORMAT_VERSION, META  # one definition of the bundle format
from vitis.config import BUNDLE_DIR, FINGERPRINTS, VITIS_DIR
from vitis.files import md5_file, read_json, replace_path, scratch_dir, write_json

HOST_SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}
#: Host model preference after the xmodel's own mode.
STEM_ORDER = ("ptq_int8", "fp32")


class BundleError(ValueError):
    """The run cannot be bundled (nothing to bundle, or a model file does not match its record)."""


def landmark_summary() -> Dict[str, Any]:
    from runtime.landmarks import MIRROR, NUM_POINTS, OUTER_EYE_CORNERS, REGIONS

    return {"scheme": "WFLW-98", "num_points": NUM_POINTS, "outer_eye_corners": list(OUTER_EYE_CORNERS),
            "mirror": list(MIRROR), "regions": {k: list(v) for k, v in REGIONS.items()}}


def _scalars(entry: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in entry.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def accuracy_from_metrics(run_dir: str) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Optional[str]]]:
    """(scalar metrics per artifact, keys of the FP32 and pof2 INT8 entries) from run/metrics.json."""
    from keras_flm.report_md import read_metrics

    metrics = read_metrics(run_dir)
    acc = {k: _scalars(v) for k, v in sorted(metrics.items())}
    pof2 = sorted(k for k in acc if "pof2" in k)
    ref = {"fp32": "fp32" if "fp32" in acc else None, "pof2_int8": pof2[0] if pof2 else None}
    return acc, ref


def _host_models(run_dir: str) -> List[str]:
    return sorted(f for f in os.listdir(run_dir) if os.path.splitext(f)[1].lower() in HOST_SUFFIXES
                  and os.path.isfile(os.path.join(run_dir, f)))


def _preferred(files: List[str], suffix: str, mode: Optional[str]) -> Optional[str]:
    order = ((mode + "_int8",) if mode else ()) + STEM_ORDER
    for stem in order:
        if stem + suffix in files:
            return stem + suffix
    rest = [f for f in files if f.endswith(suffix)]
    return rest[0] if rest else None


def _versions(run_dir: str, compile_rec: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    import cv2

    try:
        from importlib import metadata

        flm_version = metadata.version("flm")
    except Exception:  # noqa: BLE001 - not installed as a distribution (plain checkout)
        from keras_flm import __version__ as flm_version
    run_versions = {}
    cfg_path = os.path.join(run_dir, "config.json")
    if os.path.isfile(cfg_path):
        run_versions = dict(read_json(cfg_path).get("versions") or {})
    return {"flm": flm_version, "bundle_format": FORMAT_VERSION, "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__, "run": run_versions,
            "compiler": (compile_rec or {}).get("compiler")}


def _architecture(run_dir: str) -> Dict[str, Any]:
    cfg_path = os.path.join(run_dir, "config.json")
    arch: Dict[str, Any] = {"name": "MobileNetV2-PFLD"}
    if os.path.isfile(cfg_path):
        arch.update(read_json(cfg_path).get("model") or {})
    return arch


def _crop(run_dir: str) -> Dict[str, Any]:
    from runtime.preprocess import CropSpec

    cfg_path = os.path.join(run_dir, "config.json")
    d = read_json(cfg_path).get("crop", {}) if os.path.isfile(cfg_path) else {}
    return CropSpec.from_dict(d or {}).to_dict()


def build_bundle(run_dir: str, tarball: bool = True, verify: bool = True) -> Dict[str, Any]:
    """Write run/bundle/ (and run/bundle.tar.gz) atomically; returns meta.json's content."""
    run_dir = os.path.normpath(run_dir)
    if not os.path.isdir(run_dir):
        raise BundleError("run directory not found: %s" % run_dir)
    run_name = os.path.basename(os.path.abspath(run_dir))
    compile_path = os.path.join(run_dir, VITIS_DIR, COMPILE_RECORD)
    compile_rec = read_json(compile_path) if os.path.isfile(compile_path) else None
    host = _host_models(run_dir)
    if compile_rec is None and not host:
        raise BundleError("nothing to bundle in %s: no compiled xmodel (flm vitis compile --run %s) and no "
                          ".onnx/.tflite model (flm export --run %s)" % (run_dir, run_dir, run_dir))

    with scratch_dir(run_dir) as tmp:
        out = os.path.join(tmp, BUNDLE_DIR)
        os.makedirs(out)
        files: Dict[str, Dict[str, Any]] = {}
        models: Dict[str, str] = {}
        dpu = None
        in_fix = out_fix = out_offset = None
        mode = None
        if compile_rec is not None:
            src = os.path.join(run_dir, compile_rec["xmodel"])
            if not os.path.isfile(src):
                raise BundleError("%s names %s, which does not exist: compile again" % (compile_path, src))
            md5 = md5_file(src)
            if md5 != compile_rec.get("md5"):
                raise BundleError("%s has md5 %s but %s recorded %s: it changed after compiling; "
                                  "compile again" % (src, md5, compile_path, compile_rec.get("md5")))
            checked = _check_xmodel(src, run_dir, compile_rec)
            name = os.path.basename(src)
            shutil.copyfile(src, os.path.join(out, name))
            files[name] = {"backend": "vart", "source": compile_rec["xmodel"]}
            models["vart"] = name
            mode = str(compile_rec.get("model", "")).replace("vitis_", "") or None
            xir = compile_rec.get("xir") or {}
            in_fix = (xir.get("inputs") or [{}])[0].get("fix_point")
            out_fix = (xir.get("outputs") or [{}])[0].get("fix_point")
            out_offset = float(compile_rec.get("output_offset") or 0.0)
            dpu_sub = [s for s in (checked.get("xir") or {}).get("subgraphs", []) if s["device"] == "DPU"]
            if dpu_sub:  # read from the file itself (XIR) rather than the record
                in_fix, out_fix = dpu_sub[0]["inputs"][0]["fix_point"], dpu_sub[0]["outputs"][0]["fix_point"]
            dpu = {"target": compile_rec.get("target") or (compile_rec.get("arch") or {}).get("content", {})
                   .get("target"),
                   "fingerprint": checked.get("fingerprint"),
                   "fingerprint_source": checked.get("fingerprint_source"),
                   "known_fingerprints": dict(FINGERPRINTS),
                   "compiled_from": compile_rec.get("model"),
                   "dpu_subgraphs": checked.get("dpu_subgraphs"),
                   "total_subgraphs": compile_rec.get("total_subgraphs"),
                   "xmodel_md5": md5}
        for fname in host:
            shutil.copyfile(os.path.join(run_dir, fname), os.path.join(out, fname))
            files[fname] = {"backend": HOST_SUFFIXES[os.path.splitext(fname)[1].lower()], "source": fname}
        for suffix, backend in HOST_SUFFIXES.items():
            pick = _preferred(host, suffix, mode)
            if pick:
                models[backend] = pick
        for fname, rec in files.items():
            path = os.path.join(out, fname)
            rec["md5"] = md5_file(path)
            rec["bytes"] = os.path.getsize(path)

        accuracy, reference = accuracy_from_metrics(run_dir)
        crop = _crop(run_dir)
        size = int(crop["size"])
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model_name": "pfld", "architecture": _architecture(run_dir), "run": run_name,
            "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "crop": crop,
            "input": {"shape": [1, size, size, 1], "layout": "NHWC", "dtype": "uint8 crop",
                      "normalisation": "(u8 - input_mean) * input_scale", "dpu_fix_point": in_fix},
            "output": {"shape": [1, 196], "meaning": "98 (x, y) pairs in crop-normalised [0, 1] coordinates",
                       "dpu_fix_point": out_fix, "dpu_offset": out_offset},
            "landmarks": landmark_summary(),
            "models": models, "files": files, "dpu": dpu,
            "accuracy": accuracy, "accuracy_reference": reference,
            "versions": _versions(run_dir, compile_rec),
        }
        write_json(os.path.join(out, META), meta)
        if verify:
            _verify(out)
        tar_tmp = None
        if tarball:
            tar_tmp = os.path.join(tmp, "bundle.tar.gz")
            with tarfile.open(tar_tmp, "w:gz") as tar:
                tar.add(out, arcname="%s-bundle" % run_name)
        replace_path(out, os.path.join(run_dir, BUNDLE_DIR))
        if tar_tmp:
            replace_path(tar_tmp, os.path.join(run_dir, "bundle.tar.gz"))
    return meta


def _check_xmodel(xmodel: str, run_dir: str, compile_rec: Dict[str, Any]) -> Dict[str, Any]:
    """The board's rules (vitis.compile.verify_xmodel: one DPU subgraph, crop-contract I/O), read with XIR
    when importable, else from the compile record; a failing xmodel is not bundled."""
    from runtime.preprocess import CropSpec
    from vitis.compile import verify_xmodel
    from vitis.tools import load_xir

    res = verify_xmodel(xmodel, load_xir(), record=compile_rec, spec=CropSpec.from_dict(_crop(run_dir)),
                        run_hint=run_dir)
    if res["problems"]:
        raise BundleError("%s fails the board checks (read with %s), so it is not bundled:\n  - %s\n"
                          "(`flm vitis check --run %s` prints every rule)"
                          % (xmodel, res["read_with"], "\n  - ".join(res["problems"]), run_dir))
    return res


def _verify(bundle_dir: str) -> None:
    """Load the new bundle the way the board will (runtime.bundle), before it replaces the old one."""
    try:
        from runtime.bundle import load_bundle
    except ImportError:  # the runtime's loader is optional for writing a bundle
        return
    try:
        load_bundle(bundle_dir)
    except Exception as e:  # noqa: BLE001 - whatever the loader objects to, the bundle is not written
        raise BundleError("the new bundle does not load with runtime.bundle: %s" % e) from e
