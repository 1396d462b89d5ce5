#!/usr/bin/env python
"""Does a trained, quantized run beat the committed release? The rules (quant/release_gate.py) are
fixed before the run is scored and judge on the validation split; exit 0 = release it, 1 = keep the
release, 2 = cannot compare. scripts/release_full.sh runs it before `flm release`.

    .venv/bin/python scripts/release_gate.py --run runs/NAME [--release models/pfld98_w1] [--json gate.json]
    .venv/bin/python scripts/release_gate.py --run runs/NAME --fp32-only   # check 1, before quantizing

Prints one row per check: the candidate's number, the release's, the rule and PASS/FAIL. The re-crop
checks (and the reported probe from jittered start boxes) run each model's host-default INT8 ONNX on
the run's validation faces (~1-2 min per model).
"""
import argparse
import json
import os
import sys
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from keras_flm.shared_tree import FACES98, data_help, display_path  # noqa: E402


def _fmt(v: Optional[float], signed: bool = False) -> str:
    if v is None:
        return "–"
    return ("%+.3f" if signed else "%.3f") % (100 * v)


def main(argv: Optional[List[str]] = None) -> int:
    from runtime.release import source_release

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the candidate: a quantized training run directory")
    release = source_release()
    ap.add_argument("--release", default=release,
                    help="the release to beat (default: %s; none there: only the INT8 check)"
                    % display_path(release))
    ap.add_argument("--data", default=FACES98, help=data_help())
    ap.add_argument("--turned-val", default=None,
                    help="turned validation set (scripts/make_pose_data.py --part val): check 1 then "
                         "weighs it at WFLW's large-pose share (quant/release_gate.py)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N validation faces (tests)")
    ap.add_argument("--json", dest="json_out", default=None, help="write the checks as JSON")
    ap.add_argument("--fp32-only", action="store_true",
                    help="only check 1 (validation FP32 NME; needs `flm eval --run RUN --split val`): "
                         "asked before quantizing, so a run that cannot pass stops early")
    a = ap.parse_args(argv)
    if a.limit is not None and a.limit < 1:
        ap.error("--limit must be >= 1")
    cfg_path = os.path.join(a.run, "config.json")
    if not os.path.isfile(cfg_path):
        ap.error("%s not found (--run must be a training run directory)" % cfg_path)

    from tqdm import tqdm

    from keras_flm.config import RunConfig
    from keras_flm.evaluate import EvalError, load_split
    from keras_flm.report_md import markdown_table
    from quant import release_gate as G
    from quant.release import run_default_int8

    try:
        cand = G.candidate_scores(a.run, fp32_only=a.fp32_only)
        base = G.release_scores(a.release)
        cfg = RunConfig.load(cfg_path)
        if base is not None:
            G.comparable_splits(cfg, RunConfig.load(os.path.join(a.release, "config.json")))
        records = load_split(a.data, "val", cfg)[0][:a.limit]
        if a.turned_val:
            G.check_turned_val(a.turned_val, a.data, cfg)
            turned = load_split(a.turned_val, "test", cfg)[0][:a.limit]
    except (G.GateError, EvalError, ValueError, OSError) as e:
        print("release gate: %s" % e, file=sys.stderr)
        return 2
    models = {}
    if not a.fp32_only:
        models["candidate"] = os.path.join(a.run, run_default_int8(a.run))
        if base is not None:
            models["release"] = os.path.join(a.release, base["int8"])
    for who, path in models.items():
        if not os.path.isfile(path):
            print("release gate: the %s's host-default INT8 model %s is missing" % (who, path),
                  file=sys.stderr)
            return 2
    for scores, path in ((cand, models.get("candidate")), (base, models.get("release"))):
        if scores is None or path is None:
            continue
        with tqdm(total=2 * len(records), desc="re-crops of %s" % path, unit="face", leave=False) as bar:
            scores.update(G.recrop_scores(path, records, progress=bar.update))
    if a.turned_val:
        from keras_flm.evaluate import evaluate_model

        fp32 = {"candidate": os.path.join(a.run, "fp32.h5"), "release": os.path.join(a.release, "fp32.h5")}
        for who, scores in (("candidate", cand), ("release", base)):
            if scores is None:
                continue
            desc = "turned val, %s" % display_path(fp32[who])
            with tqdm(total=len(turned), desc=desc, unit="face", leave=False) as bar:
                res = evaluate_model(fp32[who], turned, cfg.crop, progress=bar.update)
                scores["fp32_turned_val"] = float(res["metrics"]["nme"])
    checks = (G.validation_checks if a.fp32_only else G.gate_checks)(cand, base)
    rows = [[c["check"], _fmt(c["candidate"], c["release"] is None and c["check"].startswith("test")),
             _fmt(c["release"]), c["rule"], "PASS" if c["ok"] else "FAIL"] for c in checks]
    ok = G.passed(checks)
    print("%s against %s on %d validation faces (NME %%%s)\n"
          % (a.run, display_path(a.release) if base is not None else "no release", len(records),
             "" if a.fp32_only else "; INT8 rows: pp against the run's FP32 on test"))
    print(markdown_table(["check", "candidate", "release", "rule", ""], rows))
    shown = [] if a.fp32_only else G.reported(cand, base)
    if shown:
        print("\nReported, not gated:\n")
        print(markdown_table(["probe", "candidate", "release"],
                             [[r["probe"], _fmt(r["candidate"]), _fmt(r["release"])] for r in shown]))
    failed = [c["check"] for c in checks if not c["ok"]]
    verdict = ("PASS: quantize it (the other checks follow)" if a.fp32_only else "PASS: release it")
    print("\n%s" % (verdict if ok else "FAIL (%s): keep the release" % "; ".join(failed)))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"run": a.run, "release": display_path(a.release) if base is not None else None,
                       "faces": len(records), "models": {k: display_path(v) for k, v in models.items()},
                       "checks": checks, "reported": shown, "fp32_only": a.fp32_only, "passed": ok},
                      f, indent=2)
        print("wrote %s" % a.json_out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
