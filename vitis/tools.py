"""Lazy access to the Vitis AI tools, with one clear error when they are absent.

vai_q_tensorflow2 (a fork of tensorflow-model-optimization exporting `vitis_quantize`
and `vitis_inspect`), vai_c_tensorflow2 and XIR ship in the Vitis AI docker image: none
is on PyPI. vai_q_tensorflow2 also builds on a plain host from source (`make vai-q`,
vitis.vai_q_env: its own cached virtualenv, which `flm vitis quantize` runs itself in).
So nothing here is imported at module level, and a command that needs a tool it cannot
find stops with exit code 2 and a message naming the tool, how to build it on the host
where that works, and the `docker run` line that provides it -- before it has loaded a
model or written a byte.
"""
import importlib
import importlib.util
import os
import shutil
from typing import Any, Optional

import click

from vitis.config import COMPILER, CONDA_ENV, FLM_IMAGE, VAI_INSPECT_MODULE, VAI_Q_MODULE, VITIS_AI_IMAGE

#: Exit status of "this needs the Vitis AI docker" (1 stays for ordinary failures).
EXIT_TOOL_MISSING = 2


class VitisToolMissing(click.ClickException):
    """A Vitis AI tool is not available in this environment."""

    exit_code = EXIT_TOOL_MISSING


def docker_lines(command: str = "flm vitis ...") -> str:
    """The two commands that give `command` its tools: build the project image, run it."""
    return ("  docker build -t %s .\n"
            "  docker run --rm -v \"$PWD\":/workspace %s %s\n"
            "The container sees the current directory as /workspace, so give paths relative to it; "
            "data elsewhere needs its own mount (-v /path/to/data:/data ... --data /data)."
            % (FLM_IMAGE, FLM_IMAGE, command))


def missing_message(tool: str, command: str, detail: str = "") -> str:
    """Text of the error: which tool, which image provides it, how to run the command there."""
    msg = ("%s is not available here: it exists only inside the Vitis AI docker image %s "
           "(conda env %s), which the repository's Dockerfile extends with this project. "
           "From the repository root run:\n%s" % (tool, VITIS_AI_IMAGE, CONDA_ENV, docker_lines(command)))
    if detail:
        msg += "\n(%s)" % detail
    return msg


def _import_vai_q_module(name: str, tool: str, command: str) -> Any:
    # Fast path: without any tensorflow_model_optimization there is nothing to try (and no
    # reason to pay for importing TensorFlow just to fail).
    if importlib.util.find_spec("tensorflow_model_optimization") is None:
        raise VitisToolMissing(missing_message(tool, command, "no tensorflow_model_optimization installed"))
    package, _, attr = name.rpartition(".")
    try:
        import keras_flm  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

        module = importlib.import_module(package)
        found = getattr(module, attr, None)
        if found is None:
            found = importlib.import_module(name)
        return found
    except Exception as e:  # stock TFMOT has no vitis_* modules: ImportError, or worse on version skew
        raise VitisToolMissing(missing_message(
            tool, command, "found a tensorflow_model_optimization without %s -- stock TFMOT, not the "
            "Vitis AI fork: %s: %s" % (attr, type(e).__name__, e))) from e


def vai_q_here() -> bool:
    """Whether this environment's tensorflow_model_optimization is the Vitis AI fork (a file check:
    imports nothing, so no TensorFlow)."""
    spec = importlib.util.find_spec("tensorflow_model_optimization")
    for d in (spec.submodule_search_locations or []) if spec is not None else []:
        if os.path.isfile(os.path.join(d, "python", "core", "quantization", "keras", "vitis",
                                       "vitis_quantize.py")):
            return True
    return False


def load_vai_q(command: str = "flm vitis quantize ...") -> Any:
    """`vitis_quantize` (VitisQuantizer, quantize_scope) from vai_q_tensorflow2."""
    try:
        return _import_vai_q_module(VAI_Q_MODULE, "vai_q_tensorflow2 (%s)" % VAI_Q_MODULE, command)
    except VitisToolMissing as e:
        from vitis import vai_q_env

        raise VitisToolMissing("On this host: %s\n%s" % (vai_q_env.why_missing(), e.message)) from e


def load_vai_inspect(command: str = "flm vitis inspect ...") -> Any:
    """`vitis_inspect` (VitisInspector) from vai_q_tensorflow2."""
    return _import_vai_q_module(VAI_INSPECT_MODULE, "vai_q_tensorflow2 (%s)" % VAI_INSPECT_MODULE,
                                command)


def find_compiler(command: str = "flm vitis compile ...") -> str:
    """Absolute path of vai_c_tensorflow2 on PATH."""
    path = shutil.which(COMPILER)
    if path is None:
        raise VitisToolMissing(missing_message(COMPILER, command, "%s is not on PATH" % COMPILER))
    return path


def load_xir() -> Optional[Any]:
    """The `xir` Python module if present (docker, board), else None: XIR is optional here."""
    try:
        return importlib.import_module("xir")
    except ImportError:
        return None
