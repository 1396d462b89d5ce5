#!/usr/bin/env python
"""Stand-in for vai_c_tensorflow2 (docs/vitis-ai.md §3): same arguments, log lines and outputs.

Partition rule (what splits the real compiler's DPU graph): layers the DPU cannot run
(Softmax, Lambda, TFOpLambda, Rescaling, non-ReLU activations) end a DPU subgraph, and so
does Flatten -> Dense (Vitis-AI issue #427). The output fix2float is a CPU subgraph, and
the input a USER subgraph, as in real xmodels. The xmodel it writes is a real serial_v2 protobuf
(tests/runtime/fake_vitis/xir.py write_fake_xmodel), so the real XIR reads it too.
"""
import argparse
import hashlib
import json
import os
import sys

import h5py

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from tests.runtime.fake_vitis.xir import write_fake_xmodel  # noqa: E402 (the repository root, above)

CPU_CLASSES = {"Softmax", "Lambda", "TFOpLambda", "Rescaling", "Normalization", "PReLU"}
FINGERPRINTS = {"DPUCZDX8G_ISA1_B4096": 0x101000056010407}


#: vai_q's saved H5 (checked against the real one by tests/vitis/test_vai_q_host.py; its class names
#: carry the registration package, "Vitis>QuantizeWrapper"): the input
#: is an InputLayer then a VitisQuantize layer ("quant_<input>"); every other layer is a
#: QuantizeWrapper ("quant_<name>") whose config["layer"] is the float layer (BatchNorm folded away),
#: or vai_q's DPU version of it (GlobalAveragePooling2D -> VitisGlobalAveragePooling2D).
WRAPPERS = {"QuantizeWrapper", "QuantizeWrapperV2"}
INPUT_CLASSES = {"InputLayer", "VitisQuantize"}


def layer_classes(h5_path):
    """(class name, config) per layer of a Keras H5, vai_q's QuantizeWrappers unwrapped."""
    with h5py.File(h5_path, "r") as f:
        raw = f.attrs["model_config"]
    cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    out = []
    for entry in cfg["config"]["layers"]:
        cls, conf = entry["class_name"].split(">")[-1], entry["config"]  # "Vitis>QuantizeWrapper"
        if cls in WRAPPERS:
            cls, conf = conf["layer"]["class_name"].split(">")[-1], conf["layer"]["config"]
        out.append((cls, conf))
    return out


def count_dpu_subgraphs(layers):
    segments, in_dpu, prev = 0, False, None
    for cls, cfg in layers:
        if cls in INPUT_CLASSES:
            continue
        on_cpu = cls in CPU_CLASSES or (cls == "Activation"
                                        and cfg.get("activation") not in ("relu", "linear"))
        split = cls == "Dense" and prev == "Flatten"
        if on_cpu:
            in_dpu = False
        elif not in_dpu or split:
            segments += 1
            in_dpu = True
        prev = cls
    return segments


def main(argv=None):
    p = argparse.ArgumentParser(prog="vai_c_tensorflow2")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-a", "--arch", required=True)
    p.add_argument("-o", "--output_dir", required=True)
    p.add_argument("-n", "--net_name", required=True)
    p.add_argument("-e", "--options", default="{}")
    a = p.parse_args(argv)
    options = json.loads(a.options)
    with open(a.arch) as f:
        arch = json.load(f)
    if arch.get("target"):
        target = arch["target"]
        fingerprint = FINGERPRINTS[target]
    else:
        fingerprint = int(arch["fingerprint"], 16)
        target = "DPUCZDX8G_ISA1_B4096_%016x" % fingerprint
    print("[INFO] Namespace(batchsize=1, inputs_shape=None, layout='NHWC', model_files=['%s'], "
          "model_type='tensorflow2', named_inputs_shape=None, out_filename='%s/%s_org.xmodel', proto=None)"
          % (a.model, a.output_dir, a.net_name))
    print("[INFO] tensorflow2 model: %s" % os.path.abspath(a.model))
    layers = layer_classes(a.model)
    exit_code = int(os.environ.get("FAKE_VAI_C_EXIT", "0"))
    if exit_code:
        print("[UNILOG][FATAL][XCOM_DATA_OUTRANGE][Data value is out of range!]", flush=True)
        return exit_code
    dpu = count_dpu_subgraphs(layers)
    total = dpu + max(dpu, 1) + 1  # CPU pieces between/after DPU pieces + the USER input
    print("[UNILOG][INFO] Target architecture: %s" % target)
    print("[UNILOG][INFO] Graph name: %s, with op num: %d" % (a.net_name, 3 * len(layers)))
    print("[UNILOG][INFO] Begin to compile...")
    print("[UNILOG][INFO] Total device subgraph number %d, DPU subgraph number %d" % (total, dpu))
    print("[UNILOG][INFO] Compile done.")
    os.makedirs(a.output_dir, exist_ok=True)
    shape = [int(v) for v in options.get("input_shape", "1,112,112,1").split(",")]
    path = os.path.join(a.output_dir, a.net_name + ".xmodel")
    # a real (protobuf) xmodel with this partition, which the real XIR and the stand-in both read
    write_fake_xmodel(path, None, 7, 7, batch=shape[0], dpu_subgraphs=dpu, in_dims=shape,
                      fingerprint="0x%x" % fingerprint, name=a.net_name)
    with open(path, "rb") as f:
        md5 = hashlib.md5(f.read()).hexdigest()
    with open(os.path.join(a.output_dir, "meta.json"), "w") as f:
        json.dump({"target": target, "lib": "libvart-dpu-runner.so", "filename": a.net_name + ".xmodel",
                   "kernel": ["subgraph_%d" % i for i in range(dpu)]}, f)
    with open(os.path.join(a.output_dir, "md5sum.txt"), "w") as f:
        f.write(md5 + "\n")
    print('[UNILOG][INFO] The meta json is saved to "%s"' % os.path.join(a.output_dir, "meta.json"))
    print('[UNILOG][INFO] The compiled xmodel is saved to "%s"' % path)
    print("[UNILOG][INFO] The compiled xmodel's md5sum is %s, and has been saved to \"%s\""
          % (md5, os.path.join(a.output_dir, "md5sum.txt")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
