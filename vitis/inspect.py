"""Vitis Inspector driver: the quantizer's own verdict on which layers map to the DPU.

VitisInspector(target).inspect_model(fp32, input_shape=[1, 112, 112, 1], dump_results=True)
prints a per-layer table (ID, Name, Type, Device, Notes) and returns {layer: InspectResult}
whose `.device` is INPUT, DPU, CPU or a '+'-joined mix. The text goes to
run/vitis/inspect.txt and the device per layer to run/vitis/inspect.json.
`flm vitis lint` applies the documented limits without the docker; this is the
authoritative check inside it.
"""
import os
from typing import Any, Dict, List

from vitis.files import scratch_dir


def inspect_model(vi: Any, float_model: Any, target: str, input_shape: List[int], out_dir: str
                  ) -> Dict[str, Any]:
    """Run the Inspector; returns {"text": table, "layers": [...], "cpu_layers": [...]}."""
    with scratch_dir(out_dir) as tmp:
        txt = os.path.join(tmp, "inspect.txt")
        results = vi.VitisInspector(target=target).inspect_model(
            float_model, input_shape=list(input_shape), dump_results=True, dump_results_file=txt, verbose=0)
        with open(txt) as f:
            text = f.read()
    layers = []
    for layer, res in (results or {}).items():
        notes = res.get_notes() if hasattr(res, "get_notes") else []
        layers.append({"id": getattr(res, "id", None), "name": getattr(layer, "name", str(layer)),
                       "type": layer.__class__.__name__, "device": str(getattr(res, "device", "?")),
                       "notes": [str(n) for n in notes]})
    cpu = [r["name"] for r in layers if r["device"] not in ("INPUT", "DPU")]
    return {"text": text, "layers": layers, "cpu_layers": cpu, "target": target}
