"""vai_c driver: command lines, arch choice, log checks, and the whole compile with stand-ins."""
import json
import os

import click
import pytest
from click.testing import CliRunner

from keras_flm.cli import cli
from tests.runtime.fake_vitis.xir import write_fake_xmodel
from vitis.compile import (
    CompileError,
    build_command,
    check_log,
    compile_model,
    parse_fingerprint,
    parse_log,
    resolve_arch,
)
from vitis.config import ARCH_PRESETS, DEFAULT_FINGERPRINT, FINGERPRINTS, VitisConfig
from vitis.files import md5_file

LOG_OK = """[INFO] parse raw model     :100%|██████████| 168/168 [00:00<00:00, 20118.86it/s]
[UNILOG][INFO] Compile mode: dpu
[UNILOG][INFO] Debug mode: null
[UNILOG][INFO] Target architecture: DPUCZDX8G_ISA1_B4096
[UNILOG][INFO] Graph name: pfld, with op num: 423
[UNILOG][INFO] Begin to compile...
[UNILOG][INFO] Total device subgraph number 3, DPU subgraph number 1
[UNILOG][INFO] Compile done.
[UNILOG][INFO] The compiled xmodel's md5sum is 8b549308bcea5ff04e6e63d61635e02b, and has been saved to "x"
"""
LOG_GLOG = ("I20231117 11:22:32.471781 105724 compile_pass_manager.cpp:548] Total device subgraph number 3, "
            "CPU subgraph number 1\n"
            "I20231117 11:22:32.471781 105724 compile_pass_manager.cpp:557] Total device subgraph number 3, "
            "DPU subgraph number 1\n")
LOG_SPLIT = LOG_OK.replace("number 3, DPU subgraph number 1", "number 5, DPU subgraph number 2")


def test_command_for_each_arch_source(tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"target": "DPUCZDX8G_ISA1_B4096"}))
    cfg = VitisConfig()
    cmd = build_command("vai_c_tensorflow2", "/r/vitis_ptq.h5", str(arch), "/r/out", cfg.net_name,
                        cfg.input_shape_option())
    assert cmd == ["vai_c_tensorflow2", "-m", "/r/vitis_ptq.h5", "-a", str(arch), "-o", "/r/out", "-n",
                   "flm_pfld", "--options", '{"input_shape": "1,112,112,1"}']

    default = resolve_arch()
    assert default.kind == "target" and default.content == {"target": "DPUCZDX8G_ISA1_B4096"}
    assert default.expected_fingerprint()[0] == DEFAULT_FINGERPRINT

    fp = resolve_arch(fingerprint="0x101000016010407")
    assert fp.content == {"fingerprint": "0x101000016010407"}
    assert fp.expected_fingerprint() == ("0x101000016010407", "arch.json fingerprint")

    own = resolve_arch(arch_json=str(arch))
    assert own.kind == "json" and own.source == str(arch) and own.content["target"] == "DPUCZDX8G_ISA1_B4096"

    preset = resolve_arch(arch="kv260", must_exist=False)
    assert preset.source == ARCH_PRESETS["kv260"] == "/opt/vitis_ai/compiler/arch/DPUCZDX8G/KV260/arch.json"
    with pytest.raises(click.BadParameter, match="arch file not found"):
        resolve_arch(arch="kv260")  # outside the docker the preset file is absent


def test_arch_sources_are_validated(tmp_path):
    with pytest.raises(click.UsageError, match="mutually exclusive"):
        resolve_arch(arch="kv260", fingerprint="0x1")
    with pytest.raises(click.BadParameter, match="not a fingerprint"):
        parse_fingerprint("101000016010407")
    assert parse_fingerprint(" 0X101000016010407 ".replace("X", "x")) == "0x101000016010407"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dpu": "B4096"}))
    with pytest.raises(click.BadParameter, match="must hold"):
        resolve_arch(arch_json=str(bad))
    bad.write_text("{not json")
    with pytest.raises(click.BadParameter, match="not valid JSON"):
        resolve_arch(arch_json=str(bad))


def test_log_parsing_and_subgraph_check():
    info = parse_log(LOG_OK)
    assert (info.total_subgraphs, info.dpu_subgraphs) == (3, 1)
    assert info.target == "DPUCZDX8G_ISA1_B4096" and info.md5 == "8b549308bcea5ff04e6e63d61635e02b"
    check_log(info, "log")
    glog = parse_log(LOG_GLOG)  # glog format; the CPU-count line must not be taken for the DPU count
    assert (glog.total_subgraphs, glog.dpu_subgraphs) == (3, 1)
    with pytest.raises(CompileError, match="reported 2 DPU subgraphs") as e:
        check_log(parse_log(LOG_SPLIT), "the.log", "runs/x")
    assert "total device subgraphs 5" in str(e.value) and "flm vitis lint --run runs/x" in str(e.value)
    with pytest.raises(CompileError, match="no 'Total device subgraph number"):
        check_log(parse_log("[UNILOG][INFO] Compile done.\n"), "log")


def _runner_from_fake(dpu_subgraphs=1, exit_code=0):
    """An injected runner that behaves like vai_c: writes NET.xmodel/md5sum.txt into -o and logs."""
    calls = []

    def run(cmd, cwd):
        calls.append((cmd, cwd))
        args = dict(zip(cmd[1::2], cmd[2::2]))
        if exit_code:
            return exit_code, "[UNILOG][FATAL] boom\n"
        xmodel = os.path.join(args["-o"], args["-n"] + ".xmodel")
        arch = {}  # a real (protobuf) xmodel carrying the arch's fingerprint, as vai_c writes
        if os.path.isfile(args["-a"]):
            with open(args["-a"]) as f:
                arch = json.load(f)
        fp = arch.get("fingerprint") or DEFAULT_FINGERPRINT
        write_fake_xmodel(xmodel, None, 7, 6, dpu_subgraphs=dpu_subgraphs, fingerprint=fp, name=args["-n"])
        md5 = md5_file(xmodel)
        with open(os.path.join(args["-o"], "md5sum.txt"), "w") as f:
            f.write(md5)
        return 0, LOG_OK.replace("DPU subgraph number 1", "DPU subgraph number %d" % dpu_subgraphs).replace(
            "8b549308bcea5ff04e6e63d61635e02b", md5)

    run.calls = calls
    return run


def _ptq(run_dir):
    (run_dir / "vitis_ptq.h5").write_bytes((run_dir / "fp32.h5").read_bytes())


def test_compile_records_xmodel_md5(run_dir):
    _ptq(run_dir)
    runner = _runner_from_fake()
    rec = compile_model(str(run_dir), "vitis_ptq", resolve_arch(fingerprint="0x101000016010407"),
                        runner=runner)
    cmd, cwd = runner.calls[0]
    assert cmd[cmd.index("-m") + 1] == str(run_dir / "vitis_ptq.h5")
    arch_arg = cmd[cmd.index("-a") + 1]  # written in the scratch dir, which is gone after the move
    assert ".flm-tmp-" in arch_arg and arch_arg.endswith("arch.json") and not os.path.exists(arch_arg)
    kept = run_dir / "vitis" / "vitis_ptq"
    assert json.loads((kept / "arch.json").read_text()) == {"fingerprint": "0x101000016010407"}
    xmodel = run_dir / rec["xmodel"]
    assert xmodel == kept / "flm_pfld.xmodel" and rec["md5"] == md5_file(str(xmodel))
    assert (rec["dpu_subgraphs"], rec["total_subgraphs"]) == (1, 3)
    assert rec["fingerprint"] == "0x101000016010407"
    assert rec["output_offset"] == 0.0  # no quantize record: an h5 quantized elsewhere
    assert json.loads((run_dir / "vitis" / "compile.json").read_text()) == rec
    assert json.loads((kept / "compile.json").read_text()) == rec  # beside the xmodel, for the runtime
    assert not [p for p in os.listdir(run_dir / "vitis") if p.startswith(".flm-tmp")]


def test_compile_carries_the_quantizers_output_offset(run_dir):
    """vitis quantize's PTQ head emits landmarks - 0.5; the compile record beside the xmodel says so
    (runtime.backends.vart_backend reads it), and a record of another h5 is refused."""
    _ptq(run_dir)
    (run_dir / "vitis").mkdir(exist_ok=True)
    record = run_dir / "vitis" / "quantize_ptq.json"
    h5_md5 = md5_file(str(run_dir / "vitis_ptq.h5"))
    record.write_text(json.dumps({"output_offset": 0.5, "output_md5": h5_md5}))
    rec = compile_model(str(run_dir), "vitis_ptq", resolve_arch(), runner=_runner_from_fake())
    assert rec["output_offset"] == 0.5
    from runtime.backends.vart_backend import recorded_output_offset

    beside = str(run_dir / "vitis" / "vitis_ptq" / "compile.json")
    assert recorded_output_offset(str(run_dir / rec["xmodel"])) == (0.5, beside)
    record.write_text(json.dumps({"output_offset": 0.5, "output_md5": "0" * 32}))
    with pytest.raises(CompileError, match="quantize_ptq.json describes another vitis_ptq.h5"):
        compile_model(str(run_dir), "vitis_ptq", resolve_arch(), runner=_runner_from_fake())


def test_compile_refuses_split_graph_and_leaves_only_the_log(run_dir):
    _ptq(run_dir)
    with pytest.raises(CompileError, match="reported 2 DPU subgraphs"):
        compile_model(str(run_dir), "vitis_ptq", resolve_arch(), runner=_runner_from_fake(2))
    assert sorted(os.listdir(run_dir / "vitis")) == ["compile-failed.log"]
    with pytest.raises(CompileError, match="exited with status 3"):
        compile_model(str(run_dir), "vitis_ptq", resolve_arch(), runner=_runner_from_fake(exit_code=3))
    assert "boom" in (run_dir / "vitis" / "compile-failed.log").read_text()


def test_compile_needs_the_quantized_model(run_dir):
    with pytest.raises(click.ClickException, match="quantize first"):
        compile_model(str(run_dir), "vitis_qat", resolve_arch(), runner=_runner_from_fake())


def test_cli_compile_with_fake_compiler_and_xir(run_dir, fake_compiler_on_path, fake_xir, monkeypatch):
    import vitis.tools

    _ptq(run_dir)
    monkeypatch.setattr(vitis.tools, "load_xir", lambda: fake_xir)
    monkeypatch.chdir(run_dir.parent.parent)  # a relative --run, as inside the docker's /workspace
    r = CliRunner().invoke(cli, ["vitis", "compile", "--run", os.path.join("runs", run_dir.name)])
    assert r.exit_code == 0, r.output
    rec = json.loads((run_dir / "vitis" / "compile.json").read_text())
    assert rec["fingerprint"] == FINGERPRINTS["vai3"] and rec["fingerprint_source"] == "xmodel (XIR)"
    assert rec["xir"]["inputs"][0]["fix_point"] == 7 and rec["xir"]["inputs"][0]["dims"] == [1, 112, 112, 1]
    assert rec["target"] == "DPUCZDX8G_ISA1_B4096"
    assert "--fingerprint 0x101000016010407" in r.output  # the hint for the Kria overlay

    r = CliRunner().invoke(cli, ["vitis", "compile", "--run", str(run_dir), "--fingerprint",
                                 "0x101000016010407"])
    assert r.exit_code == 0, r.output
    rec = json.loads((run_dir / "vitis" / "compile.json").read_text())
    assert rec["fingerprint"] == "0x101000016010407"


def test_cli_compile_split_graph_fails_naming_count(run_dir, fake_compiler_on_path, tmp_path):
    from keras_flm.keras_compat import get_keras

    keras = get_keras()
    inp = keras.Input((112, 112, 1))
    x = keras.layers.Conv2D(4, 3, strides=4)(inp)
    x = keras.layers.Dense(8)(keras.layers.Flatten()(x))
    keras.Model(inp, x).save(str(run_dir / "vitis_ptq.h5"), save_format="h5")
    r = CliRunner().invoke(cli, ["vitis", "compile", "--run", str(run_dir)])
    assert r.exit_code == 1
    assert "reported 2 DPU subgraphs" in r.output
    assert not (run_dir / "vitis" / "compile.json").exists()
