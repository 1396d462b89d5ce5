"""runtime/xmodel.py on the two real KV260 xmodels (../shared/vendor/xmodels), through the real XIR (built by
`make xir`) and the stand-in: the same answers from both, what each model holds, the crop-contract
refusals, and files that are not xmodels (clear errors; the real XIR would abort the process)."""
import pytest

from runtime.xmodel import (
    XmodelError,
    check_runnable,
    contract_problems,
    decode,
    format_info,
    preflight,
    read_xmodel,
    subgraph_problem,
)
from tests.runtime.fake_vitis import impl
from tests.runtime.fake_vitis.impl import (
    CUSTOM_OP,
    FINGERPRINT,
    MNIST,
    require_real_xir,
    require_vendor,
    standin_xir,
)
from tests.runtime.fake_vitis.xir import write_fake_xmodel

xir_impl = impl.xir_impl  # the fixture: real XIR and stand-in


def _attrs(obj):
    """Every attribute the binding converts (maps/bytes vectors it does not are None in both)."""
    return {k: obj.get_attr(k) for k in sorted(obj.get_attrs())}


def _deep(graph):
    """Everything flm could read from a graph through the xir API, as plain data."""
    root = graph.get_root_subgraph()
    out = {"name": graph.get_name(), "children": []}
    for s in root.toposort_child_subgraph():
        ops = sorted(s.get_ops(), key=lambda o: o.get_name())
        tensors = {"in": sorted(s.get_input_tensors(), key=lambda t: t.name),
                   "out": sorted(s.get_output_tensors(), key=lambda t: t.name)}
        out["children"].append({
            "name": s.get_name(), "attrs": {k: v for k, v in _attrs(s).items() if not isinstance(v, bytes)},
            "mc_code_bytes": len(s.get_attr("mc_code")) if s.has_attr("mc_code") else None,
            "ops": [(o.get_name(), o.get_type(), o.get_output_tensor().name) for o in ops],
            "tensors": {k: [(t.name, list(t.dims), t.dtype, _attrs(t)) for t in v]
                        for k, v in tensors.items()},
        })
    return out


@pytest.mark.parametrize("path", [MNIST, CUSTOM_OP], ids=["mnist", "custom_op"])
def test_real_and_standin_give_identical_answers(path):
    require_vendor()
    real, fake = require_real_xir(), standin_xir()
    assert read_xmodel(str(path), real) == read_xmodel(str(path), fake)
    assert _deep(real.Graph.deserialize(str(path))) == _deep(fake.Graph.deserialize(str(path)))


@pytest.mark.parametrize("dpu", [1, 2])
def test_real_xir_reads_the_standin_written_xmodels(tmp_path, dpu):
    """The fake xmodels the runtime tests run are real xmodels: XIR reads them as the stand-in does."""
    real, fake = require_real_xir(), standin_xir()
    p = write_fake_xmodel(str(tmp_path / "f.xmodel"), str(tmp_path / "m.onnx"), 7, 6, dpu_subgraphs=dpu)
    assert read_xmodel(p, real) == read_xmodel(p, fake)
    assert _deep(real.Graph.deserialize(p)) == _deep(fake.Graph.deserialize(p))


def test_mnist_model(xir_impl):
    require_vendor()
    info = read_xmodel(str(MNIST), xir_impl)
    assert info.graph == "mnist_classifier"
    assert [(s.name, s.device) for s in info.subgraphs] == [("subgraph_input_1", "USER"),
                                                            ("subgraph_quant_conv2d", "DPU"),
                                                            ("subgraph_quant_dense_1_softmax", "CPU")]
    (s,) = info.dpu
    assert (s.name, s.dpu_name) == ("subgraph_quant_conv2d", "DPUCZDX8G_ISA1_B4096")
    assert s.fingerprint_hex == FINGERPRINT
    assert [(t.name, t.dims, t.dtype, t.fix_point) for t in s.inputs] == [("quant_input_1", [1, 28, 28, 1],
                                                                           "xint8", 6)]
    assert [(t.name, t.dims, t.fix_point) for t in s.outputs] == [("quant_dense_1_softmax_fix", [1, 10], 2)]
    assert subgraph_problem(info) is None  # the one-DPU-subgraph rule holds ...
    problems = contract_problems(info)  # ... but it is not a face-landmark model
    assert len(problems) == 2
    assert "expects input quant_input_1 [1, 28, 28, 1] xint8, fix_point 6; flm feeds [batch, 112, 112, 1]" \
        in problems[0]
    assert "= 10 values per face; flm reads 196 values per face" in problems[1]
    with pytest.raises(XmodelError, match="dpu_mnist_classifier.xmodel cannot run in flm"):
        check_runnable(info)
    text = "\n".join(format_info(info))
    assert "DPU  subgraph_quant_conv2d  (DPUCZDX8G_ISA1_B4096, fingerprint 0x101000056010407)" in text
    assert "in   quant_input_1 [1, 28, 28, 1] xint8, fix_point 6" in text


def test_custom_op_model(xir_impl):
    require_vendor()
    info = read_xmodel(str(CUSTOM_OP), xir_impl)
    assert [s.device for s in info.subgraphs] == ["USER", "DPU", "CPU", "DPU", "CPU"]
    assert [s.fingerprint_hex for s in info.dpu] == [FINGERPRINT, FINGERPRINT]
    assert [s.name for s in info.splitters()] == ["subgraph_custom_layer"]
    assert "custom_layer (Mylayer)" in info.splitters()[0].ops
    assert info.dpu[0].inputs[0].fix_point == -2  # as XIR reports it (the vendor README's table too)
    why = subgraph_problem(info)
    assert "has 2 DPU subgraphs" in why and "split by the CPU subgraph subgraph_custom_layer" in why
    assert contract_problems(info) == [why]


@pytest.mark.parametrize("content,match", [
    (b"", "is empty"),
    (b"garbage that is no protobuf", "is not a readable xmodel"),
    (b'{"format": "fake-xmodel", "subgraphs": []}', "is not a readable xmodel"),
    (b"\n\x03abc", "is not an xmodel: it decodes, but has no op_node, subg_root"),  # a Graph with a name only
])
def test_not_an_xmodel(xir_impl, tmp_path, content, match):
    p = tmp_path / "x.xmodel"
    p.write_bytes(content)
    with pytest.raises(XmodelError, match=match):
        read_xmodel(str(p), xir_impl)


def test_truncated_copies_are_refused_not_aborted(xir_impl, tmp_path):
    require_vendor()
    data = CUSTOM_OP.read_bytes()
    for cut in (1, 100, len(data) // 3, len(data) - 2):
        p = tmp_path / "cut.xmodel"
        p.write_bytes(data[:cut])
        with pytest.raises(XmodelError, match=r"cut.xmodel is not a readable xmodel \(%d bytes\).*truncated"
                           % cut):
            read_xmodel(str(p), xir_impl)


def test_preflight_checks_what_xir_would_abort_on(tmp_path):
    from tests.runtime.fake_vitis.xir import _ld, _op, _str, _tensor

    dangling = _str(1, "g") + _op("a", "data-fix", {}, ["nowhere"], _tensor("a", [1], "xint8", 0)) \
        + _ld(10, _str(1, "root"))
    p = tmp_path / "d.xmodel"
    p.write_bytes(dangling)
    with pytest.raises(XmodelError, match="op 'a' reads op 'nowhere', which is not defined before it"):
        preflight(str(p))
    g = decode(MNIST.read_bytes()) if MNIST.is_file() else None
    if g is not None:
        assert g["graph_name"] == "mnist_classifier" and len(g["op_node"]) == 16
