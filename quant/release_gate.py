"""The release gate: does a trained, quantized run beat the committed release, by rules fixed in code
before the run is scored?

Why: `scripts/release_full.sh` ends by swapping the run into models/NAME, and a run that loses must
not get there (stop 22's candidate lost and was put back by hand with git). Choices are made on the
validation split: the 68 test faces are what the README reports, not what decides. The one check on
the test split is the issue's own INT8 target, every INT8 file and the pof2 DPU emulation within
`MAX_INT8_LOSS` of FP32, which is a property of the candidate alone.

Candidate against release, all on the validation faces of the candidate's run:
 1. FP32 NME lower; with a turned validation set (`scripts/make_pose_data.py --part val`: the run's
    own validation faces turned 20-50 degrees by pose_synth and labelled by the teacher), the NME
    with those turned faces weighted at WFLW's large-pose share (`POSE_SHARE`) lower, and the real
    faces' alone at most `MAX_FRONTAL_LOSS` higher. Why: 20 of the 470 real validation faces are
    turned by 15 degrees or more, none far, so a model that learns head turns (stop 25's turned
    training faces) shows on them only as a small loss on frontal faces;
 2. (test split) every INT8 artifact within `MAX_INT8_LOSS` of the run's FP32 NME;
 3. NME after `ITERATIONS` re-crops from the true box, each model's host-default INT8 ONNX, not higher;
 4. the same with the lower `OCCLUDE` of every face hidden (runtime.stability.occluded_frames), the
    probe that separates the drift seen on half-hidden test faces (README, "Drift measured on
    validation").

Reported beside the checks, not gated (`reported`): the NME after `ITERATIONS` re-crops from start boxes
`PROBE_JITTER` of the face size off (`PROBE_DRAWS` per face, "exact" jitter: the centre moved that far,
the box 1 +- that much larger or smaller). Why: the video's lost tracks (stop 26) start from a box that
shrank onto part of the face and stay there, a fixed point the chain from the true box never visits.
It is not a check yet because no release has been chosen with it; it shows whether a candidate
returns from such boxes.
"""
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from keras_flm.report_md import read_json, read_metrics
from runtime.metrics import POSE_SHARE, pose_weighted

#: INT8 may lose at most this much NME against FP32 (0.1 pp: the issue's target).
MAX_INT8_LOSS = 0.001
#: The run's metrics.json entries that hold INT8 scores on the test split, and the commands that make them.
INT8_ARTIFACTS = {
    "ptq_int8": "flm quantize ptq --run RUN",
    "ptq_int8_onnx": "flm quantize ptq --run RUN",
    "ptq_pof2": "flm quantize ptq --run RUN --scheme pof2",
    "ptq_pof2_dpu": "flm quantize ptq --run RUN --scheme pof2",
    "qat_int8": "flm quantize qat --run RUN",
    "qat_int8_onnx": "flm quantize qat --run RUN",
}
ITERATIONS = 10
OCCLUDE = 0.25
#: the reported probe's start boxes: this far off the face, in face sizes, this many per face
PROBE_JITTER = 0.3
PROBE_DRAWS = 2
PROBE_LABEL = "val after %d re-crops from boxes %d %% off" % (ITERATIONS, round(100 * PROBE_JITTER))
#: With turned validation faces, the real ones may lose at most this against the release (the
#: 0.1 pp the issue allows INT8): a pose gain may not buy more frontal loss than quantization may.
MAX_FRONTAL_LOSS = 0.001


class GateError(ValueError):
    """The gate cannot compare (missing scores, different validation splits); names what to run."""


def run_scores(run_metrics: Dict[str, Dict[str, Any]], run_dir: str = "RUN",
               fp32_only: bool = False) -> Dict[str, float]:
    """{"fp32_val": ..., "fp32": ..., INT8 artifact: ...} NME from a run's metrics.json, or a GateError
    naming every missing entry and the command that makes it. `fp32_only`: just "fp32_val", what
    check 1 needs before the run is quantized (`validation_checks`)."""
    need = {"fp32_val": "flm eval --run RUN --split val"}
    if not fp32_only:
        need.update(INT8_ARTIFACTS, fp32="flm eval --run RUN")
    missing = [k for k in need if (run_metrics.get(k) or {}).get("nme") is None]
    if missing:
        raise GateError("%s/metrics.json lacks %s; make them with:\n%s" % (
            run_dir, ", ".join(missing),
            "\n".join(sorted({"  " + need[k].replace("RUN", run_dir) for k in missing}))))
    return {k: float(run_metrics[k]["nme"]) for k in need}


def release_scores(release_dir: str) -> Optional[Dict[str, Any]]:
    """{"fp32_val": NME, "int8": host-default INT8 ONNX file} of a release, None when there is none."""
    path = os.path.join(release_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    data = read_json(path)
    try:
        return {"fp32_val": float(data["models"]["fp32.h5"]["val_nme"]), "int8": str(data["default_int8"])}
    except (KeyError, TypeError, ValueError):
        raise GateError("%s has no models.fp32.h5.val_nme or default_int8: not a release's metrics.json"
                        % path) from None


def check(name: str, candidate: float, release: Optional[float], ok: bool, rule: str) -> Dict[str, Any]:
    return {"check": name, "candidate": candidate, "release": release, "ok": bool(ok), "rule": rule}


def validation_checks(cand: Dict[str, float], base: Optional[Dict[str, float]]) -> List[Dict[str, Any]]:
    """Check 1 alone, from "fp32_val" (and "fp32_turned_val") on both sides. Why apart: it needs only
    the FP32 model, so `scripts/release_full.sh` asks it before half an hour of quantization, tracking
    and video that a run failing it would spend for nothing (`scripts/release_gate.py --fp32-only`)."""
    out = []
    b = base or {}
    if "fp32_turned_val" in cand:
        mix = pose_weighted(cand["fp32_val"], cand["fp32_turned_val"])
        b_mix = None if base is None else pose_weighted(b["fp32_val"], b["fp32_turned_val"])
        out.append(check("val FP32 NME, turned faces at %.0f %%" % (100 * POSE_SHARE), mix, b_mix,
                         base is None or mix < b_mix, "lower than the release"))
        out.append(check("val FP32 NME, real faces", cand["fp32_val"], b.get("fp32_val"),
                         base is None or cand["fp32_val"] <= b["fp32_val"] + MAX_FRONTAL_LOSS + 1e-12,
                         "<= release + %.1f pp" % (100 * MAX_FRONTAL_LOSS)))
    else:
        out.append(check("val FP32 NME", cand["fp32_val"], b.get("fp32_val"),
                         base is None or cand["fp32_val"] < b["fp32_val"], "lower than the release"))
    return out


def gate_checks(cand: Dict[str, float], base: Optional[Dict[str, float]]) -> List[Dict[str, Any]]:
    """The checks from numbers: `cand` holds the run's scores (run_scores) plus "recrop" and
    "occluded" (after ITERATIONS re-crops) and, with a turned validation set, "fp32_turned_val";
    `base` the release's "fp32_val", "recrop", "occluded" (and "fp32_turned_val") (None: no
    release yet, so only the INT8 check can fail)."""
    out = validation_checks(cand, base)
    b = base or {}
    for k in INT8_ARTIFACTS:
        loss = cand[k] - cand["fp32"]
        out.append(check("test %s - FP32" % k, loss, None, loss <= MAX_INT8_LOSS + 1e-12,
                         "<= %.1f pp" % (100 * MAX_INT8_LOSS)))
    hidden = "val after %d re-crops, lower %d %% hidden" % (ITERATIONS, 100 * OCCLUDE)
    for key, label in (("recrop", "val after %d re-crops" % ITERATIONS), ("occluded", hidden)):
        out.append(check(label, cand[key], b.get(key), base is None or cand[key] <= b[key],
                         "not higher than the release"))
    return out


def passed(checks: Sequence[Dict[str, Any]]) -> bool:
    return all(c["ok"] for c in checks)


def reported(cand: Dict[str, float], base: Optional[Dict[str, float]]) -> List[Dict[str, Any]]:
    """The numbers shown beside the checks that decide nothing (yet): the jittered-start probe."""
    return [{"probe": PROBE_LABEL, "candidate": cand.get("jittered"),
             "release": None if base is None else base.get("jittered")}]


def recrop_scores(model: str, records: Sequence[Any], seed: int = 0,
                  progress: Optional[Callable[[int], Any]] = None) -> Dict[str, float]:
    """Mean NME after ITERATIONS re-crops of `model` on `records`, with the model loaded once:
    "recrop" from the true box, "occluded" the same with the lower OCCLUDE of each face hidden, and
    "jittered" from the probe's start boxes (chains of the same pass as "recrop"). `progress` counts
    two steps per face."""
    from runtime import stability as S

    be = S.load_model(model, threads=1)  # scripts/eval_tracking.py's default: the same numbers
    try:
        study = S.recrop_study(be, records, ITERATIONS, (PROBE_JITTER,), PROBE_DRAWS, seed, mode="exact",
                               progress=progress)
        hidden = S.recrop_study(be, records, ITERATIONS, (), 1, seed, progress=progress,
                                frame_of=S.occluded_frames(records, OCCLUDE, seed))
    finally:
        be.close()
    plain = S.summarize_study(study)
    return {"recrop": float(plain["recrop_nme"]), "jittered": float(plain["rows"][1]["nme"][-1]),
            "occluded": float(S.summarize_study(hidden)["recrop_nme"])}


def comparable_splits(run_cfg: Any, release_cfg: Any) -> None:
    """GateError unless both runs carve the same validation faces out of the train list."""
    keys = ("seed", "val_fraction", "max_images")
    a = {k: getattr(run_cfg.train, k) for k in keys}
    b = {k: getattr(release_cfg.train, k) for k in keys}
    if a != b:
        raise GateError("the run's validation split (%s) is not the release's (%s): their validation "
                        "NMEs are not comparable" % (a, b))


def check_turned_val(root: str, data_root: str, run_cfg: Any) -> None:
    """GateError unless `root` holds turned copies of this run's own validation faces
    (keras_flm.train.check_turned_val)."""
    from keras_flm.train import check_turned_val as check

    try:
        check(root, data_root, run_cfg.train)
    except ValueError as e:
        raise GateError(str(e)) from None


def candidate_scores(run_dir: str, fp32_only: bool = False) -> Dict[str, float]:
    return run_scores(read_metrics(run_dir), run_dir, fp32_only)
