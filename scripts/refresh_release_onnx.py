#!/usr/bin/env python
"""Re-write a release's ONNX files through today's ONNX save passes (quant.onnx_save), keeping their
outputs bit-identical, and the size records that name them (quant.release.refresh_release_onnx).

    .venv/bin/python scripts/refresh_release_onnx.py                 # models/pfld98_w1

Why a script: the run a release came from is in runs/, not in git, so `flm release` cannot re-make it
on a fresh machine; this changes only how the same INT8 graphs are stored (stop 27: the all-zero int32
bias zero points ORT writes, 40 kB of the per-channel QAT ONNX).
"""
import argparse
import os
import sys
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv: Optional[List[str]] = None) -> int:
    from runtime.release import RELEASE_NAME

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", default=os.path.join(REPO, "models", RELEASE_NAME),
                    help="release directory (default: %(default)s)")
    a = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(a.release, "meta.json")):
        ap.error("%s is not a release (no meta.json)" % a.release)
    from quant.release import ReleaseError, refresh_release_onnx

    try:
        changed = refresh_release_onnx(a.release)
    except (ReleaseError, OSError, ValueError) as e:
        print("refresh_release_onnx: %s" % e, file=sys.stderr)
        return 1
    saved = sum(b - c for b, c in changed.values())
    print("%s: %d ONNX file(s) re-written, %d bytes saved" % (a.release, len(changed), saved))
    return 0


if __name__ == "__main__":
    sys.exit(main())
