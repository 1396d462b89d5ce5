"""`python -m vitis.vai_q_worker VITIS_ARGS`: the real `flm vitis ...` command inside the quantizer's
venv (TensorFlow 2.12 + vai_q_tensorflow2), started by `vitis.vai_q_env.run_flm`.

Its own module so that `vai_q_env` (which `vitis.commands`, `tools` and `quantize` use to find and
start the venv) never imports the command tree back."""
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from vitis.commands import vitis

    args = list(sys.argv[1:] if argv is None else argv)
    return vitis.main(args=args, prog_name="flm vitis", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
