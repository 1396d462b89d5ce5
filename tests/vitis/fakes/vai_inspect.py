"""Stand-in for vai_q_tensorflow2's target-aware `vitis_inspect` (docs/vitis-ai.md §2).

The quantizer itself runs for real on the host (`make vai-q`, tests/vitis/test_vai_q_host.py),
but VitisInspector(target=...) needs target_factory and xcompiler, which ship only in the
Vitis AI docker. Signatures follow vitis_inspect.py of Vitis AI 3.5; the result maps each
layer to an InspectResult whose `.device` is INPUT, DPU or CPU, like the real one's. The real
Inspector refuses to run without a target (test_vai_q_host.py checks that), so it cannot be
compared with one here.
"""
import types

CPU_CLASSES = {"Softmax", "Lambda", "TFOpLambda", "Rescaling"}


class InspectResult(object):
    def __init__(self, device, notes):
        self.device = device
        self.notes = notes
        self.id = None

    def get_notes(self, layer_name=None):
        return list(self.notes)


class VitisInspector(object):
    def __init__(self, quantize_strategy="pof2s", custom_quantize_strategy=None,
                 custom_objects={}, target=None, target_type=None):  # noqa: B006 - the real default
        self.target = target

    def inspect_model(self, float_model, input_shape=None, plot=False, plot_file="model.svg",
                      dump_model=False, dump_model_file="inspect_model.h5", dump_results=True,
                      dump_results_file="inspect_results.txt", verbose=0, configs={}, **kwargs):  # noqa: B006
        results = {}
        lines = ["[MODEL INFO]:", "Model Name: %s" % float_model.name, "ID Name Type Device Notes"]
        for i, layer in enumerate(float_model.layers):
            cls = layer.__class__.__name__
            dev = "INPUT" if cls == "InputLayer" else ("CPU" if cls in CPU_CLASSES else "DPU")
            notes = ["%s is not supported by target %s" % (cls, self.target)] if dev == "CPU" else []
            res = InspectResult(dev, notes)
            res.id = i
            results[layer] = res
            lines.append("%d/%d %s %s %s %s" % (i, len(float_model.layers) - 1, layer.name, cls, dev,
                                               "; ".join(notes)))
        if all(r.device in ("INPUT", "DPU") for r in results.values()):
            lines.append("  All layers are supported and successfully mapped to DPU.")
        if dump_results:
            with open(dump_results_file, "w") as f:
                f.write("\n".join(lines))
        return results


vitis_inspect = types.SimpleNamespace(VitisInspector=VitisInspector)
