"""vai_c_tensorflow2 driver: arch.json choice, command line, log check, xmodel record.

    vai_c_tensorflow2 -m vitis_ptq.h5 -a arch.json -o OUT -n flm_pfld \\
        --options '{"input_shape": "1,112,112,1"}'

The compiler prints `Total device subgraph number N, DPU subgraph number M`; the board
runs one DPU subgraph per call, so anything but M = 1 means part of the network fell
back to the CPU and the compile is refused (a CPU subgraph for the output fix2float is
normal, hence N = 2 or 3). The xmodel's md5 and, when XIR is importable (docker, board, or
`make xir` on a host), its DPU fingerprint and I/O fix points are recorded in
run/vitis/compile.json. `verify_xmodel` holds the board's rules for any xmodel (one DPU
subgraph, crop-contract I/O, the board's fingerprint), read through runtime/xmodel.py;
`flm vitis check` and `flm vitis bundle` apply them.

Fingerprints: VART refuses an xmodel whose fingerprint differs from the loaded DPU's
("CHECK fingerprint fail"). Vitis AI 3.x compiles DPUCZDX8G_ISA1_B4096 to
0x101000056010407; Kria Ubuntu's kv260-benchmark-b4096 overlay has been reported to carry
0x101000016010407 (the 2.5 value). `--fingerprint 0x...` compiles for an explicit value
(an arch.json of just {"fingerprint": ...}); read the board's with `xdputil query`.

The subprocess and XIR are parameters (`runner`, `xir`) so tests drive this module with the
compiler stand-in, and with the real XIR or its stand-in (tests/runtime/fake_vitis/xir.py).
"""
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import click

from runtime.bundle import COMPILE_RECORD
from vitis.config import (
    ARCH_PRESETS,
    COMPILER,
    DEFAULT_FINGERPRINT,
    DEFAULT_TARGET,
    FINGERPRINTS,
    VITIS_DIR,
    VitisConfig,
)
from vitis.files import md5_file, read_json, replace_path, scratch_dir, write_json, write_text

SUBGRAPH_RE = re.compile(r"Total device subgraph number\s+(\d+)\s*,\s*DPU subgraph number\s+(\d+)")
TARGET_RE = re.compile(r"Target architecture:\s*(\S+)")
MD5_RE = re.compile(r"md5sum is\s+([0-9a-fA-F]{32})")
FINGERPRINT_RE = re.compile(r"^0x[0-9a-fA-F]{1,16}$")

#: runner(cmd, cwd) -> (return code, combined stdout/stderr text)
Runner = Callable[[List[str], str], Tuple[int, str]]


class CompileError(click.ClickException):
    """The compiler failed or produced something the board cannot run as one DPU call."""


@dataclass
class ArchChoice:
    """Where the compiler's arch.json comes from (exactly one source)."""

    kind: str  # "target" | "preset" | "json" | "fingerprint"
    value: str
    content: Dict[str, Any] = field(default_factory=dict)
    source: Optional[str] = None  # the file read, for presets and --arch-json

    def expected_fingerprint(self) -> Tuple[Optional[str], str]:
        """(fingerprint the xmodel should carry, where that belief comes from)."""
        fp = self.content.get("fingerprint")
        if self.content.get("target"):  # arch.json: target wins if both are present
            if self.content["target"] == DEFAULT_TARGET:
                return DEFAULT_FINGERPRINT, "Vitis AI 3.x target_factory value for %s" % DEFAULT_TARGET
            return None, "unknown for target %s" % self.content["target"]
        if fp:
            return str(fp), "arch.json fingerprint"
        return None, "arch.json names neither target nor fingerprint"


@dataclass
class CompileLog:
    """What the compile log says."""

    total_subgraphs: Optional[int] = None
    dpu_subgraphs: Optional[int] = None
    target: Optional[str] = None
    md5: Optional[str] = None


def parse_fingerprint(value: str) -> str:
    """Validate a fingerprint like 0x101000016010407 (hex, 0x prefix); returns it lower-cased."""
    v = value.strip()
    if not FINGERPRINT_RE.match(v):
        known = ", ".join("%s (%s)" % (fp, k) for k, fp in FINGERPRINTS.items())
        raise click.BadParameter("%r is not a fingerprint: expected 0x followed by up to 16 hex digits, "
                                 "e.g. %s" % (value, known), param_hint="--fingerprint")
    return "0x" + v[2:].lower()


def resolve_arch(arch: Optional[str] = None, arch_json: Optional[str] = None,
                 fingerprint: Optional[str] = None, target: str = DEFAULT_TARGET,
                 must_exist: bool = True) -> ArchChoice:
    """Turn the mutually exclusive --arch / --arch-json / --fingerprint options into an ArchChoice."""
    given = [n for n, v in (("--arch", arch), ("--arch-json", arch_json), ("--fingerprint", fingerprint))
             if v]
    if len(given) > 1:
        raise click.UsageError("%s are mutually exclusive: pick one arch source" % " and ".join(given))
    if fingerprint:
        fp = parse_fingerprint(fingerprint)
        return ArchChoice("fingerprint", fp, {"fingerprint": fp})
    if arch:
        key = arch.lower()
        if key not in ARCH_PRESETS:
            raise click.BadParameter("unknown arch %r; choose from %s"
                                     % (arch, ", ".join(sorted(ARCH_PRESETS))), param_hint="--arch")
        return _arch_from_file("preset", key, ARCH_PRESETS[key], must_exist)
    if arch_json:
        return _arch_from_file("json", arch_json, arch_json, must_exist)
    return ArchChoice("target", target, {"target": target})


def _arch_from_file(kind: str, value: str, path: str, must_exist: bool) -> ArchChoice:
    if not os.path.isfile(path):
        if must_exist:
            raise click.BadParameter("arch file not found: %s" % path,
                                     param_hint="--arch" if kind == "preset" else "--arch-json")
        return ArchChoice(kind, value, {}, path)
    try:
        content = read_json(path)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--arch-json") from None
    if not isinstance(content, dict) or not (content.get("target") or content.get("fingerprint")):
        raise click.BadParameter("%s must hold {\"target\": \"DPU...\"} or {\"fingerprint\": \"0x...\"}, "
                                 "got %r" % (path, content), param_hint="--arch-json")
    if content.get("fingerprint") and not content.get("target"):
        content["fingerprint"] = parse_fingerprint(str(content["fingerprint"]))
    return ArchChoice(kind, value, content, path)


def build_command(compiler: str, model_path: str, arch_json: str, out_dir: str, net_name: str,
                  input_shape: str) -> List[str]:
    """The vai_c_tensorflow2 argv (no shell: the JSON option needs no quoting)."""
    return [compiler, "-m", model_path, "-a", arch_json, "-o", out_dir, "-n", net_name,
            "--options", json.dumps({"input_shape": input_shape})]


def parse_log(text: str) -> CompileLog:
    """Pull the subgraph summary, target and md5 out of a vai_c log (last occurrence wins)."""
    info = CompileLog()
    subs = SUBGRAPH_RE.findall(text)
    if subs:
        info.total_subgraphs, info.dpu_subgraphs = int(subs[-1][0]), int(subs[-1][1])
    targets = TARGET_RE.findall(text)
    if targets:
        info.target = targets[-1]
    md5s = MD5_RE.findall(text)
    if md5s:
        info.md5 = md5s[-1].lower()
    return info


def check_log(info: CompileLog, log_path: str, run_hint: str = "runs/NAME") -> None:
    """Refuse anything but exactly one DPU subgraph, naming the count."""
    if info.dpu_subgraphs is None:
        raise CompileError("the compile log has no 'Total device subgraph number N, DPU subgraph number M' "
                           "line, so the partition cannot be checked (log: %s)" % log_path)
    if info.dpu_subgraphs != 1:
        raise CompileError(
            "%s reported %d DPU subgraphs (total device subgraphs %s); the board runs the model as ONE "
            "DPU subgraph, so exactly 1 is required. Parts of the graph fell back to the CPU: find them "
            "with `flm vitis lint --run %s` or `flm vitis inspect --run %s` (usual causes: Flatten->Dense, "
            "rectangular pooling, standalone activations). Log: %s"
            % (COMPILER, info.dpu_subgraphs, info.total_subgraphs, run_hint, run_hint, log_path))


def subprocess_runner(cmd: List[str], cwd: str) -> Tuple[int, str]:
    """Run the compiler, echoing its output live and returning it."""
    lines = []
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        click.echo(line, nl=False, err=True)
        lines.append(line)
    return proc.wait(), "".join(lines)


def xmodel_info(path: str, xir: Any) -> Dict[str, Any]:
    """Subgraphs, DPU fingerprint and I/O fix points of an xmodel, read with XIR (runtime/xmodel.py)."""
    from runtime.xmodel import read_xmodel, subgraph_problem

    x = read_xmodel(path, xir)
    info: Dict[str, Any] = {"graph": x.graph, "subgraphs": len(x.subgraphs), "dpu_subgraphs": len(x.dpu),
                            "devices": [s.device for s in x.subgraphs],
                            "layout": [{"name": s.name, "device": s.device} for s in x.subgraphs],
                            "splitters": [{"name": s.name, "ops": s.ops} for s in x.splitters()],
                            "subgraph_problem": subgraph_problem(x)}
    if len(x.dpu) == 1:
        s = x.dpu[0]
        info["subgraph"] = s.name
        if s.fingerprint is not None:
            info["fingerprint"] = s.fingerprint_hex
        if s.dpu_name is not None:
            info["dpu_name"] = s.dpu_name
        info["inputs"] = [asdict(t) for t in s.inputs]
        info["outputs"] = [asdict(t) for t in s.outputs]
    return info


def _fail_log(vitis_dir: str, log: str) -> str:
    path = os.path.join(vitis_dir, "compile-failed.log")
    write_text(path, log)
    return path


def quantized_output_offset(run_dir: str, model_name: str, model_md5: str) -> float:
    """What the runtime adds to the dequantized output (vitis quantize's record of RUN/<model_name>.h5,
    whose md5 is `model_md5`): the PTQ head emits landmarks minus the crop centre
    (VitisConfig.output_offset). 0.0 without a record (an h5 quantized elsewhere); a record of another
    file than the one compiled is refused."""
    path = os.path.join(run_dir, VITIS_DIR, "quantize_%s.json" % model_name.replace("vitis_", ""))
    if not os.path.isfile(path):
        return 0.0
    rec = read_json(path)
    if rec.get("output_md5") and rec["output_md5"] != model_md5:
        raise CompileError("%s describes another %s.h5 (md5 %s, the file has %s): quantize again"
                           % (path, model_name, rec["output_md5"], model_md5))
    return float(rec.get("output_offset") or 0.0)


def compile_model(run_dir: str, model_name: str, arch: ArchChoice, cfg: Optional[VitisConfig] = None,
                  compiler: str = COMPILER, runner: Runner = subprocess_runner, xir: Any = None,
                  run_hint: Optional[str] = None) -> Dict[str, Any]:
    """Compile run/<model_name>.h5 into run/vitis/<model_name>/ and record run/vitis/compile.json.

    Everything is built in a scratch directory and moved into place only after the log
    shows one DPU subgraph and the xmodel's md5 checks out; on failure the complete log
    is kept as run/vitis/compile-failed.log and nothing else changes.
    """
    cfg = cfg or VitisConfig()
    run_hint = run_hint or run_dir
    run_dir = os.path.abspath(run_dir)  # the compiler runs in the scratch dir: no relative paths
    model_path = os.path.join(run_dir, model_name + ".h5")
    if not os.path.isfile(model_path):
        raise click.ClickException(
            "%s not found: quantize first (flm vitis quantize --run %s --mode %s)"
            % (model_path, run_hint, model_name.replace("vitis_", "")))
    vitis_dir = os.path.join(run_dir, VITIS_DIR)
    started = time.time()
    with scratch_dir(vitis_dir) as tmp:
        out_dir = os.path.join(tmp, model_name)
        os.makedirs(out_dir)
        arch_path = os.path.join(out_dir, "arch.json")
        if arch.kind == "preset" and arch.source:
            shutil.copyfile(arch.source, arch_path)  # keep a record; compile against the docker's file
            arch_arg = arch.source
        else:
            write_json(arch_path, arch.content)
            arch_arg = arch_path
        cmd = build_command(compiler, model_path, arch_arg, out_dir, cfg.net_name, cfg.input_shape_option())
        click.echo("$ " + " ".join(_quote(c) for c in cmd), err=True)
        try:
            rc, log = runner(cmd, tmp)
        except OSError as e:
            raise CompileError("could not run %s: %s" % (cmd[0], e)) from e
        write_text(os.path.join(out_dir, "compile.log"), log)
        if rc != 0:
            tail = "\n".join(log.strip().splitlines()[-15:])
            raise CompileError("%s exited with status %d (full log: %s). Last lines:\n%s"
                               % (COMPILER, rc, _fail_log(vitis_dir, log), tail))
        info = parse_log(log)
        try:
            check_log(info, os.path.join(vitis_dir, "compile-failed.log"), run_hint)
        except CompileError:
            _fail_log(vitis_dir, log)
            raise
        xmodel = os.path.join(out_dir, cfg.net_name + ".xmodel")
        if not os.path.isfile(xmodel):
            raise CompileError("%s reported success but wrote no %s (log: %s)"
                               % (COMPILER, os.path.basename(xmodel), _fail_log(vitis_dir, log)))
        md5 = md5_file(xmodel)
        reported = info.md5 or _md5sum_txt(os.path.join(out_dir, "md5sum.txt"))
        if reported and reported != md5:
            raise CompileError("%s md5 %s differs from the compiler's %s: the file changed after compiling"
                               % (xmodel, md5, reported))
        expected_fp, fp_source = arch.expected_fingerprint()
        source_md5 = md5_file(model_path)
        record: Dict[str, Any] = {
            "model": model_name, "net_name": cfg.net_name,
            "xmodel": os.path.join(VITIS_DIR, model_name, cfg.net_name + ".xmodel"),
            "md5": md5, "bytes": os.path.getsize(xmodel),
            "arch": {"kind": arch.kind, "value": arch.value, "content": arch.content},
            "target": info.target, "total_subgraphs": info.total_subgraphs,
            "dpu_subgraphs": info.dpu_subgraphs,
            "fingerprint": expected_fp, "fingerprint_source": fp_source,
            "input_shape": cfg.input_shape_option(), "command": cmd[1:], "compiler": COMPILER,
            "source_md5": source_md5, "seconds": round(time.time() - started, 1),
            "output_offset": quantized_output_offset(run_dir, model_name, source_md5),
        }
        if xir is not None:
            xinfo = xmodel_info(xmodel, xir)
            record["xir"] = xinfo
            if xinfo.get("dpu_subgraphs") != 1:
                raise CompileError("XIR: %s" % xinfo["subgraph_problem"])
            if xinfo.get("fingerprint"):
                record["fingerprint"], record["fingerprint_source"] = xinfo["fingerprint"], "xmodel (XIR)"
        write_json(os.path.join(out_dir, COMPILE_RECORD), record)
        replace_path(out_dir, os.path.join(vitis_dir, model_name))
    write_json(os.path.join(vitis_dir, COMPILE_RECORD), record)
    stale = os.path.join(vitis_dir, "compile-failed.log")
    if os.path.exists(stale):
        os.remove(stale)
    return record


def _md5sum_txt(path: str) -> Optional[str]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        m = re.search(r"[0-9a-fA-F]{32}", f.read())
    return m.group(0).lower() if m else None


def _quote(arg: str) -> str:
    return "'%s'" % arg if any(c in arg for c in " {}\"") else arg


def _fingerprint_problem(xmodel: str, fingerprint: Optional[str], source: Optional[str], board: str,
                         run_hint: str) -> Optional[str]:
    if not fingerprint or int(fingerprint, 16) == int(board, 16):
        return None
    return ("fingerprint mismatch: %s carries %s (%s) but the board's DPU reports %s: VART would fail with "
            "\"CHECK fingerprint fail\". Recompile with `flm vitis compile --run %s --fingerprint %s`"
            % (xmodel, fingerprint, source, board, run_hint, board))


def verify_xmodel(xmodel: str, xir: Any = None, board_fingerprint: Optional[str] = None,
                  record: Optional[Dict[str, Any]] = None, spec: Any = None,
                  run_hint: str = "runs/NAME") -> Dict[str, Any]:
    """The board's rules for an xmodel: exactly one DPU subgraph (else naming the CPU subgraphs that split
    it), DPU input/output that fit the crop contract, and (given `xdputil query`'s value) the fingerprint
    VART checks. With XIR (real or stand-in) everything is read from the file; without it, from the
    compile record (`record`, run/vitis/compile.json). Returns the findings; "problems" is [] on a pass."""
    from runtime.preprocess import DEFAULT_SPEC
    from runtime.xmodel import XmodelError, contract_problems, read_xmodel

    rec = record or {}
    result: Dict[str, Any] = {"xmodel": xmodel, "fingerprint": rec.get("fingerprint"),
                              "fingerprint_source": rec.get("fingerprint_source"),
                              "dpu_subgraphs": rec.get("dpu_subgraphs"), "read_with": COMPILE_RECORD,
                              "problems": []}
    problems: List[str] = result["problems"]
    if xir is not None:
        try:
            x = read_xmodel(xmodel, xir)
        except XmodelError as e:
            problems.append(str(e))
            return result
        result.update(read_with="XIR (%s)" % getattr(xir, "__file__", getattr(xir, "__name__", "xir")),
                      dpu_subgraphs=len(x.dpu), xir=x.to_dict())
        if len(x.dpu) == 1 and x.dpu[0].fingerprint is not None:
            result.update(fingerprint=x.dpu[0].fingerprint_hex, fingerprint_source="xmodel (XIR)")
        problems.extend(contract_problems(x, spec or DEFAULT_SPEC))
    elif result["dpu_subgraphs"] != 1:
        problems.append("%s has %s DPU subgraphs (compile log); the board runs exactly 1"
                        % (xmodel, result["dpu_subgraphs"]))
    if board_fingerprint:
        board = parse_fingerprint(board_fingerprint)
        result["board_fingerprint"] = board
        why = _fingerprint_problem(xmodel, result["fingerprint"], result["fingerprint_source"], board,
                                   run_hint)
        if why:
            problems.append(why)
    return result


def check_compiled(run_dir: str, board_fingerprint: Optional[str] = None, xir: Any = None,
                   strict: bool = True) -> Dict[str, Any]:
    """Re-verify run/vitis/compile.json's xmodel: its md5 against the record, then `verify_xmodel`.
    strict: raise CompileError listing every failed rule; else return them in "problems"."""
    path = os.path.join(run_dir, VITIS_DIR, COMPILE_RECORD)
    if not os.path.isfile(path):
        raise CompileError("%s not found: compile first (flm vitis compile --run %s)" % (path, run_dir))
    try:
        rec = read_json(path)
    except ValueError as e:
        raise CompileError(str(e)) from None
    xmodel = os.path.join(run_dir, rec["xmodel"])
    if not os.path.isfile(xmodel):
        raise CompileError("%s names %s, which does not exist" % (path, xmodel))
    md5 = md5_file(xmodel)
    if md5 != rec.get("md5"):
        raise CompileError("%s has md5 %s, but %s recorded %s" % (xmodel, md5, path, rec.get("md5")))
    spec = None
    cfg = read_json(os.path.join(run_dir, "config.json"), None)
    if cfg is not None:
        from runtime.preprocess import CropSpec

        spec = CropSpec.from_dict(cfg.get("crop") or {})
    result = verify_xmodel(xmodel, xir, board_fingerprint, rec, spec, run_hint=run_dir)
    result["md5"] = md5
    if strict and result["problems"]:
        raise CompileError("\n".join(result["problems"]))
    return result
