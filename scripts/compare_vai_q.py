#!/usr/bin/env python
"""DPU emulation against the real quantizer on one trained run: fix positions and accuracy.

    make vai-q                                        # once: vai_q_tensorflow2 3.5 in its own venv
    python scripts/compare_vai_q.py --run runs/NAME [--calib 500] [--split test]

Every model sees the same crops: the run's calibration crops (vitis.calibration, as both
quantize flows use) and the evaluation split's crops made by runtime.evaluate's crop.
  * vai_q     vai_q_tensorflow2's pof2s PTQ of fp32.h5 in the quantizer's venv, through the flm
              driver (vitis.quantize.ptq), with cross-layer equalization (CLE: vai_q's default
              and `flm vitis quantize`'s; the model the board runs) and without; the head
              centred as `flm vitis quantize` centres it (VitisConfig.output_offset), the offset
              added back to the predictions as the runtime adds it;
  * pof2      the project's DPU emulation (quant.scheme "pof2" fake-quant Keras model,
              quant.flows.fake_quant_ptq as `flm quantize ptq --scheme pof2` runs it, output
              offset included), without CLE and with vai_q's CLE (SchemeOptions(cle_steps=10), quant.cle);
  * TFLite    the run's ptq_int8.tflite (`flm quantize ptq`), else made the same way here;
  * FP32      fp32.h5.
Positions: every tensor both sides quantize (weights, biases, activations), vai_q minus
emulation, as counts per difference. NME: runtime.evaluate's protocol on the split's faces.
Prints a markdown table, writes RUN/vitis/compare_vai_q/{compare.md,compare.json} and the
"Predicted board accuracy" section of RUN/report.md.
"""
import argparse
import json
import os
import sys
import time
from collections import Counter
from typing import Any, Dict, List, Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from runtime.json_files import read_json  # noqa: E402  (stdlib only: loads in the vai_q venv too)

VARIANTS = {"vai_q": True, "vai_q_nocle": False}  # name -> include_cle
SECTION = "Predicted board accuracy (vai_q vs DPU emulation)"


# ---------------------------------------------------------------------------- in the vai_q venv

def worker(model_path: str, work: str, batch: int) -> int:
    """Quantize with the real vai_q (each VARIANTS entry) and predict the evaluation crops."""
    from vitis.config import VitisConfig
    from vitis.quantize import load_float_model, ptq, quantize_info
    from vitis.tools import load_vai_q

    vq = load_vai_q("scripts/compare_vai_q.py")
    calib_x = np.load(os.path.join(work, "calib_x.npy"))
    test_x = np.load(os.path.join(work, "test_x.npy"))
    from keras_flm.model import centre_head

    for name, cle in VARIANTS.items():
        t0 = time.time()
        vcfg = VitisConfig(include_cle=cle, calib_batch_size=batch)
        model = load_float_model(model_path)
        if vcfg.output_offset:  # as `flm vitis quantize` does: the head emits landmarks - offset
            centre_head(model, vcfg.output_offset)
        q = ptq(vq, model, calib_x, vcfg, None)
        pred = q.predict(test_x, batch_size=32, verbose=0) + vcfg.output_offset  # what the runtime adds back
        np.save(os.path.join(work, "pred_%s.npy" % name), pred)
        info = dict(quantize_info(vq, q), include_cle=cle, seconds=round(time.time() - t0, 1))
        with open(os.path.join(work, "info_%s.json" % name), "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        print("vai_q %s: %d fix positions in %.0f s" % (name, info["tensors"], info["seconds"]), flush=True)
    return 0


# ---------------------------------------------------------------------------- in the project venv

def split_crops(records: List[Any], spec: Any) -> np.ndarray:
    """uint8 crops of the faces, as runtime.evaluate makes them (landmark box)."""
    from runtime.evaluate import face_box, load_image
    from runtime.preprocess import crop_face

    return np.stack([crop_face(load_image(r), face_box(r, "landmarks"), spec)[0] for r in records])


class Replay:
    """A runtime backend returning predictions made beforehand on exactly these crops, in order."""

    name = "replay"
    batch_size = None

    def __init__(self, pred: np.ndarray, crops: np.ndarray, label: str):
        self.pred, self.crops, self.label, self.i = pred.reshape(len(pred), -1, 2), crops, label, 0

    def info(self) -> Dict[str, Any]:
        return {"backend": self.name, "model": self.label}

    def infer(self, crops: np.ndarray) -> np.ndarray:
        n = len(crops)
        if not np.array_equal(crops, self.crops[self.i:self.i + n]):
            raise RuntimeError("crops differ from the ones %s predicted" % self.label)
        self.i += n
        return self.pred[self.i - n:self.i]


def score(pred: np.ndarray, records: List[Any], crops: np.ndarray, spec: Any, label: str) -> Dict[str, float]:
    from runtime import evaluate as rev

    m = rev.evaluate(Replay(pred, crops, label), records, spec=spec, batch_size=32)["metrics"]
    return {"nme": 100 * float(m["nme"]), "failure_rate": 100 * float(m["failure_rate"]),
            "auc": float(m["auc"])}


def emulation_positions(qmodel: Any) -> Dict[str, Dict[str, int]]:
    """{layer: {"kernel"|"bias"|"output": position}} of a quant.scheme pof2 fake-quant model."""
    from quant.pof2 import position_of

    out: Dict[str, Dict[str, int]] = {}
    for layer in qmodel.layers:
        kind = type(layer).__name__
        if kind == "QuantizeLayer":  # the model input
            out[layer.name] = {"output": position_of(layer.quantizer_vars["max_var"].numpy())}
            continue
        inner = getattr(layer, "layer", None)
        if inner is None:
            continue
        for weight, _, qvars in getattr(layer, "_weight_vars", []):
            key = "bias" if weight.name.split("/")[-1].startswith("bias") else "kernel"
            out.setdefault(inner.name, {})[key] = position_of(qvars["max_var"].numpy())
        qvars = getattr(layer, "_output_quantizer_vars", None) or {}
        for prefix in ("", "pre_"):  # a pool tied to its concat keeps only the mean's grid
            if prefix + "max_var" in qvars:
                out.setdefault(inner.name, {})["output"] = position_of(qvars[prefix + "max_var"].numpy())
                break
    for layer in qmodel.layers:  # a tensor only a Concatenate reads is on the concat's grid
        inner = getattr(layer, "layer", None)
        users = [n.outbound_layer for n in layer._outbound_nodes]
        if inner is None or "output" in out.get(inner.name, {}) or not users:
            continue
        if all(type(getattr(u, "layer", None)).__name__ == "Concatenate" for u in users):
            cat = {out.get(u.layer.name, {}).get("output") for u in users}
            if len(cat) == 1 and None not in cat:
                out.setdefault(inner.name, {})["output"] = cat.pop()
    return out


def compare_positions(vaiq: Dict[str, Dict[str, Any]], emu: Dict[str, Dict[str, int]],
                      input_names: Dict[str, str]) -> Dict[str, Any]:
    """Per-tensor differences vai_q - emulation on the tensors both quantize."""
    rows, only_vaiq, only_emu = [], [], []
    emu = {input_names.get(k, k): v for k, v in emu.items()}
    for layer in sorted(set(vaiq) | set(emu)):
        for key in ("kernel", "bias", "output"):
            a, b = vaiq.get(layer, {}).get(key), emu.get(layer, {}).get(key)
            if a is None and b is None:
                continue
            if a is None:
                only_emu.append("%s:%s" % (layer, key))
            elif b is None:
                only_vaiq.append("%s:%s" % (layer, key))
            else:
                rows.append({"tensor": "%s:%s" % (layer, key), "kind": key, "vai_q": int(a), "pof2": int(b),
                             "diff": int(a) - int(b)})
    hist = Counter(r["diff"] for r in rows)
    by_kind = {k: {"n": sum(1 for r in rows if r["kind"] == k),
                   "same": sum(1 for r in rows if r["kind"] == k and r["diff"] == 0)}
               for k in ("kernel", "bias", "output")}
    same = sum(1 for r in rows if r["diff"] == 0)
    return {"compared": len(rows), "identical": same, "identical_pct": 100.0 * same / max(1, len(rows)),
            "histogram": {str(k): hist[k] for k in sorted(hist)}, "by_kind": by_kind,
            "differing": [r for r in rows if r["diff"]], "only_vai_q": only_vaiq, "only_pof2": only_emu}


def tflite_preds(run_dir: str, work: str, model: Any, calib: np.ndarray, cfg: Any, test: np.ndarray):
    """(predictions, what) of the run's TFLite INT8 PTQ, made here when the run has none."""
    from runtime.backends import load_backend

    path = os.path.join(run_dir, "ptq_int8.tflite")
    what = "run's ptq_int8.tflite"
    if not os.path.isfile(path):
        from quant import ptq as P
        from quant.config import PtqConfig
        from quant.flows import fake_quant_ptq
        from quant.scheme import SchemeOptions

        pcfg = PtqConfig(calib_images=len(calib))
        qmodel, _ = fake_quant_ptq(model, calib, cfg, pcfg, SchemeOptions("default"))
        path = os.path.join(work, "ptq_int8.tflite")
        with open(path, "wb") as f:
            f.write(P.tflite_from_fake_quant(qmodel, "int8"))
        what = "made here as `flm quantize ptq` does"
    be = load_backend(path, spec=cfg.crop)
    try:
        return be.infer(test), what
    finally:
        be.close()


#: (key, label, the vai_q result it emulates) of the table rows.
ROWS = (("fp32", "FP32 (Keras)", None),
        ("vai_q", "**vai_q pof2s PTQ, CLE on** (`flm vitis quantize`: the board's model)", None),
        ("pof2_cle", "pof2 DPU emulation + CLE (quant.scheme, cle_steps=10)", "vai_q"),
        ("vai_q_nocle", "vai_q pof2s PTQ, CLE off (`--no-cle`)", None),
        ("pof2", "pof2 DPU emulation (quant.scheme, `flm quantize ptq --scheme pof2`)", "vai_q_nocle"),
        ("tflite", "TFLite INT8 PTQ (`flm quantize ptq`)", "vai_q"))
#: emulation -> the vai_q variant its fix positions are compared with.
PAIRS = (("pof2_cle", "vai_q", "CLE on"), ("pof2", "vai_q_nocle", "CLE off"))


def markdown(res: Dict[str, Any]) -> str:
    from keras_flm.report_md import markdown_table

    acc = res["accuracy"]
    rows = []
    for key, label, ref in ROWS:
        m = acc[key]
        rows.append([label, "%.3f" % m["nme"], "%+.3f" % (m["nme"] - acc[ref]["nme"]) if ref else "",
                     "%.2f" % m["failure_rate"], "%.4f" % m["auc"]])
    out = ["%d %s faces, %d calibration crops (batches of %d), run `%s`, vai_q_tensorflow2 %s (host build, "
           "no target). Δ: NME minus that of the vai_q model it emulates (CLE on/off alike; TFLite: CLE on)."
           % (res["faces"], res["split"], res["calib"], res["calib_batch"], res["run"], res["vai_q_version"]),
           "", markdown_table(["model", "NME %", "Δ vs vai_q (pp)", "FR@0.1 %", "AUC@0.1"], rows), ""]
    for emu, _, label in PAIRS:
        p = res["positions"][emu]
        kinds = ", ".join("%s %d/%d" % (k, v["same"], v["n"]) for k, v in p["by_kind"].items())
        hist = ", ".join("%s: %d" % (k, v) for k, v in p["histogram"].items())
        out.append("Fix positions, %s vs vai_q (%s): %d of %d tensors identical (%.1f %%; %s); "
                   "vai_q − emulation histogram {%s}."
                   % (emu, label, p["identical"], p["compared"], p["identical_pct"], kinds, hist))
        if p["differing"]:
            out.append("Differing (vai_q/emulation): " + ", ".join(
                "%s %d/%d" % (d["tensor"], d["vai_q"], d["pof2"]) for d in p["differing"][:30])
                + (" …" if len(p["differing"]) > 30 else "") + ".")
        if p["only_vai_q"] or p["only_pof2"]:
            out.append("Quantized by one side only: vai_q %s; emulation %s."
                       % (", ".join(p["only_vai_q"]) or "–", ", ".join(p["only_pof2"]) or "–"))
        out.append("")
    out.append("`python scripts/compare_vai_q.py --run %s --calib %d --split %s` (%.0f s)."
               % (res["run"], res["calib"], res["split"], res["seconds"]))
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=False, help="run directory with fp32.h5 and config.json")
    p.add_argument("--calib", type=int, default=500, help="calibration crops [500]")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--data", help="data root [the run's]")
    p.add_argument("--calib-batch", type=int, default=32, help="vai_q calibration batch [32]")
    p.add_argument("--no-report", action="store_true", help="do not update RUN/report.md")
    p.add_argument("--reuse", action="store_true",
                   help="reuse vai_q's results of an earlier call on the same model, crops and settings")
    p.add_argument("--worker", metavar="FP32_H5", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.work, a.calib_batch)
    if not a.run:
        p.error("--run is required")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from keras_flm.config import RunConfig
    from vitis import vai_q_env

    t_start = time.time()
    env = vai_q_env.find()
    if env is None:
        print("error: %s" % vai_q_env.why_missing(), file=sys.stderr)
        return 2
    run = a.run
    fp32 = os.path.join(run, "fp32.h5")
    if not os.path.isfile(fp32):
        print("error: %s not found (train first: flm train --run %s)" % (fp32, run), file=sys.stderr)
        return 2
    cfg = RunConfig.load(os.path.join(run, "config.json"))
    root = a.data or (cfg.data or {}).get("root")
    work = os.path.join(run, "vitis", "compare_vai_q")
    os.makedirs(work, exist_ok=True)

    from keras_flm.evaluate import load_split
    from runtime.preprocess import normalize_input
    from vitis.calibration import calibration_crops
    from vitis.config import VitisConfig

    calib = calibration_crops(run, a.calib, a.data, seed=VitisConfig().calib_seed)
    records = load_split(root, a.split, cfg)[0]
    test = split_crops(records, cfg.crop)
    np.save(os.path.join(work, "calib_x.npy"), normalize_input(calib, cfg.crop))
    np.save(os.path.join(work, "test_x.npy"), normalize_input(test, cfg.crop))
    print("%d calibration crops, %d %s faces; vai_q runs in %s"
          % (len(calib), len(records), a.split, env.root), flush=True)
    from vitis.files import md5_file

    inputs = {"fp32_md5": md5_file(fp32), "calib": len(calib), "calib_batch": a.calib_batch, "split": a.split,
              "faces": len(records), "vai_q": env.root, "output_offset": VitisConfig().output_offset}
    stamp = os.path.join(work, "vai_q_inputs.json")
    if a.reuse and read_json(stamp, None) == inputs:
        print("reusing vai_q's results in %s (same model, crops and settings)" % work, flush=True)
    else:
        rc = vai_q_env.run_python(env, [os.path.abspath(__file__), "--worker", os.path.abspath(fp32),
                                        "--work", os.path.abspath(work), "--calib-batch", str(a.calib_batch)])
        if rc:
            print("error: the vai_q worker failed (exit %d)" % rc, file=sys.stderr)
            return rc
        with open(stamp, "w") as f:
            json.dump(inputs, f)

    from quant.config import PtqConfig
    from quant.export import keras_predict
    from quant.flows import fake_quant_ptq, load_keras
    from quant.scheme import SchemeOptions

    model = load_keras(fp32)
    pcfg = PtqConfig(calib_images=a.calib)
    preds = {"fp32": keras_predict(model, test, cfg.crop)}
    emus, infos = {}, {}
    for name, cle in (("pof2", 0), ("pof2_cle", 10)):
        qmodel, _ = fake_quant_ptq(model, calib, cfg, pcfg, SchemeOptions(
            "pof2", search=pcfg.pof2_search, dpu_avgpool=pcfg.pof2_dpu_avgpool, cle_steps=cle,
            output_offset=pcfg.pof2_output_offset))
        preds[name] = keras_predict(qmodel, test, cfg.crop)
        emus[name] = (qmodel, emulation_positions(qmodel))
    preds["tflite"], tflite_what = tflite_preds(run, work, model, calib, cfg, test)
    for name in VARIANTS:
        preds[name] = np.load(os.path.join(work, "pred_%s.npy" % name))
        infos[name] = read_json(os.path.join(work, "info_%s.json" % name))
    preds = {k: np.asarray(v, np.float32).reshape(len(v), -1) for k, v in preds.items()}
    res = {"run": run, "split": a.split, "faces": len(records), "calib": len(calib),
           "calib_batch": a.calib_batch, "tflite": tflite_what,
           "vai_q_version": str(env.info.get("wheel", "-?-")).split("-")[1],
           "vai_q_build": env.root,
           "accuracy": {k: score(v, records, test, cfg.crop, k) for k, v in preds.items()},
           "positions": {emu: compare_positions(infos[ref]["positions"], emus[emu][1],
                                                _input_map(emus[emu][0], infos[ref]))
                         for emu, ref, _ in PAIRS},
           "emulation_positions": {k: v[1] for k, v in emus.items()},
           "max_abs_diff": {emu: float(np.abs(preds[emu] - preds[ref]).max()) for emu, ref, _ in PAIRS},
           "seconds": round(time.time() - t_start, 1)}
    text = markdown(res)
    with open(os.path.join(work, "compare.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    with open(os.path.join(work, "compare.md"), "w") as f:
        f.write(text + "\n")
    if not a.no_report:
        from keras_flm.report_md import update_report_section

        update_report_section(run, SECTION, text)
    print(text)
    return 0


def _input_map(qmodel: Any, info: Dict[str, Any]) -> Dict[str, str]:
    """The emulation's input QuantizeLayer name -> vai_q's input layer (quant_<input name>)."""
    vaiq_inputs = [k for k in info["positions"] if k.startswith("quant_")]
    emu_inputs = [layer.name for layer in qmodel.layers if type(layer).__name__ == "QuantizeLayer"]
    return dict(zip(emu_inputs, vaiq_inputs)) if len(emu_inputs) == len(vaiq_inputs) == 1 else {}


if __name__ == "__main__":
    sys.exit(main())
