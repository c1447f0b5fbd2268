"""A corpus of bad inputs, each run through the real `dse` command: model files, spec files,
inputs files and sweep files that must each end with exit status 2, exactly one line on
stderr naming the problem, and no traceback.

Each case is (name, files to write into a temporary folder, argv, a fragment the error line
must contain). `{tmp}` in an argument is that folder. Most cases run `dse.cli.main` in
process; SUBPROCESS ones run `python -m dse.cli` to prove the real exit status.
"""
from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dse import zoo
from dse.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "hwspecs" / "systolic.yaml")
INT8_SPEC = str(ROOT / "hwspecs" / "systolic_int8.yaml")


# ---- builders of the files a case writes (each returns bytes or text) -----------------------

def model(nodes, inputs=None, outputs=None, inits=None, opset=13, input_type=TensorProto.FLOAT) -> bytes:
    """A small ONNX model; inputs/outputs {name: shape}, inits {name: array or TensorProto}."""
    inputs = {"x": [1, 4]} if inputs is None else inputs
    outputs = {"y": None} if outputs is None else outputs
    tensors = [v if isinstance(v, TensorProto) else numpy_helper.from_array(np.asarray(v), k)
               for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "bad",
                              [helper.make_tensor_value_info(n, input_type, s) for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
                              tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def relu(**attrs):
    return [helper.make_node("Relu", ["x"], ["y"], name="r", **attrs)]


def mlp() -> bytes:
    return zoo.mlp(sizes=(16, 8, 4)).SerializeToString()


def int8_model() -> bytes:
    """uint8 x[1, 16] -> QLinearMatMul -> uint8 y[1, 4]."""
    consts = {"xs": np.float32(0.05), "xz": np.uint8(128), "w": np.arange(64, dtype=np.int8).reshape(16, 4),
              "ws": np.float32(0.02), "wz": np.int8(0), "ys": np.float32(0.1), "yz": np.uint8(128)}
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="qmm")
    return model([node], {"x": [1, 16]}, {"y": [1, 4]}, consts, input_type=TensorProto.UINT8)


def huge_initializer(dims) -> TensorProto:
    """A float initializer that declares `dims` and holds no data."""
    return TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npz_with_header(shape) -> bytes:
    """An .npz whose one array 'x' declares `shape` in its header and holds no data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", header.getvalue())
    return buffer.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def sweep_spec(sweep: str, workloads: str = "[zoo:mlp]") -> str:
    return (f"name: bad\nworkloads: {workloads}\narray: {{rows: 4, cols: 4}}\nsweep:\n" +
            "".join(f"  {line}\n" for line in sweep.strip().splitlines()))


X = np.zeros((1, 16), np.float32)
RUN_MLP = ["run", "{tmp}/mlp.onnx", "--hw", SPEC, "--inputs", "{tmp}/in.npz"]
SPEC_RUN = ["run", "zoo:mlp", "--hw", "{tmp}/spec.yaml", "--timing-only"]
SWEEP = ["sweep", "{tmp}/sweep.yaml", "--out", "{tmp}/report", "--workers", "1"]
SUBPROCESS = ("model: not protobuf", "spec: unknown key", "inputs: non-finite", "sweep: unknown strategy")

# (name, {file: bytes | text | builder}, argv, fragment of the error line)
CASES = [
    # ---- model files -------------------------------------------------------------------------
    ("model: empty file", {"m.onnx": b""}, ["compile", "{tmp}/m.onnx"], "not an ONNX model"),
    ("model: truncated", {"m.onnx": lambda: mlp()[:300]}, ["compile", "{tmp}/m.onnx"], "not a readable ONNX model"),
    ("model: not protobuf", {"m.onnx": "name,value\n1,2\n"}, ["compile", "{tmp}/m.onnx"],
     "not a readable ONNX model"),
    ("model: missing file", {}, ["compile", "{tmp}/nowhere.onnx"], "no such ONNX model file"),
    ("model: unsupported op", {"m.onnx": lambda: model([helper.make_node("Hardmax", ["x"], ["y"], name="h")])},
     ["compile", "{tmp}/m.onnx"], "op Hardmax is not supported"),
    ("model: opset too old", {"m.onnx": lambda: model(relu(), opset=6)}, ["compile", "{tmp}/m.onnx"],
     "opset 6 is not supported"),
    ("model: opset too new", {"m.onnx": lambda: model(relu(), opset=22)}, ["compile", "{tmp}/m.onnx"],
     "opset 22 is not supported"),
    ("model: op newer than its opset", {"m.onnx": lambda: model(
        [helper.make_node("QLinearConv", ["x"] * 8, ["y"], name="q")], opset=9)}, ["compile", "{tmp}/m.onnx"],
     "QLinearConv from opset 10"),
    ("model: missing initializer", {"m.onnx": lambda: model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")])}, ["compile", "{tmp}/m.onnx"],
     "input 'w' is not produced before use"),
    ("model: absurd input dims", {"m.onnx": lambda: model(relu(), {"x": [10**6, 10**6]})},
     ["compile", "{tmp}/m.onnx"], "the limit is"),
    ("model: absurd initializer dims", {"m.onnx": lambda: model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], inits={"w": huge_initializer([4, 10**12])})},
     ["compile", "{tmp}/m.onnx"], "initializer 'w': shape [4, 1000000000000]"),
    ("model: negative initializer dim", {"m.onnx": lambda: model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], inits={"w": huge_initializer([4, -2])})},
     ["compile", "{tmp}/m.onnx"], "negative dimension"),
    ("model: initializer without its data", {"m.onnx": lambda: model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], inits={"w": huge_initializer([4, 4])})},
     ["compile", "{tmp}/m.onnx"], "initializer 'w' (FLOAT[4, 4]) cannot be read"),
    ("model: absurd ConstantOfShape", {"m.onnx": lambda: model(
        [helper.make_node("ConstantOfShape", ["s"], ["c"], name="fill"), helper.make_node("Add", ["x", "c"], ["y"])],
        inits={"s": np.array([10**6, 10**6], np.int64)})}, ["compile", "{tmp}/m.onnx"], "constant folding failed"),
    ("model: attribute of the wrong type", {"m.onnx": lambda: model(
        [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis="last")])}, ["compile", "{tmp}/m.onnx"],
     "attribute 'axis' is STRING; Softmax takes INT"),
    ("model: node without inputs", {"m.onnx": lambda: model([helper.make_node("Relu", [], ["y"], name="r")])},
     ["compile", "{tmp}/m.onnx"], "has 0 inputs"),
    ("model: input of an unsupported type", {"m.onnx": lambda: model(relu(), input_type=TensorProto.INT64)},
     ["compile", "{tmp}/m.onnx"], "has type INT64"),
    ("model: 3-D conv input", {"m.onnx": lambda: model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"x": [1, 3, 8]},
        inits={"w": np.zeros((2, 3, 3, 3), np.float32)})}, ["compile", "{tmp}/m.onnx"], "4-D NCHW"),
    ("model: impossible reshape", {"m.onnx": lambda: model(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], inits={"s": np.array([3, 0, 5], np.int64)})},
     ["compile", "{tmp}/m.onnx"], "node 'rs' (Reshape)"),
    ("model: output that is never produced", {"m.onnx": lambda: model(relu(), outputs={"z": None})},
     ["compile", "{tmp}/m.onnx"], "graph output 'z' is never produced"),
    ("model: op type not UTF-8", {"m.onnx": lambda: model(relu()).replace(b"Relu", b"R\xffelu"[:4])},
     ["compile", "{tmp}/m.onnx"], "not UTF-8 text"),
    ("model: unknown zoo name", {}, ["run", "zoo:squeezent", "--timing-only"], "squeezent"),
    # ---- spec files --------------------------------------------------------------------------
    ("spec: bad YAML", {"spec.yaml": "array: [1, 2\n"}, SPEC_RUN, "not valid YAML"),
    ("spec: unknown key", {"spec.yaml": "array:\n  rowz: 8\n"}, SPEC_RUN, "unknown field 'array.rowz'"),
    ("spec: wrong type", {"spec.yaml": "array:\n  rows: eight\n"}, SPEC_RUN, "field 'array.rows' must be int"),
    ("spec: negative value", {"spec.yaml": "array:\n  rows: -4\n"}, SPEC_RUN, ">= 1"),
    ("spec: NaN", {"spec.yaml": "clock_ghz: .nan\n"}, SPEC_RUN, "finite"),
    ("spec: infinity", {"spec.yaml": "memory:\n  dram_gbps: .inf\n"}, SPEC_RUN, "finite"),
    ("spec: huge value", {"spec.yaml": "array:\n  rows: 100000000000\n"}, SPEC_RUN, "array.rows"),
    ("spec: unknown dataflow", {"spec.yaml": "array:\n  dataflow: row_stationary\n"}, SPEC_RUN,
     "allowed: weight_stationary"),
    ("spec: unknown technology", {"spec.yaml": "technology: 3nm\n"}, SPEC_RUN, "technology"),
    ("spec: not a mapping", {"spec.yaml": "- rows\n- cols\n"}, SPEC_RUN, "must be a YAML mapping"),
    ("spec: target not a name", {"spec.yaml": "target: []\n"}, SPEC_RUN, "field 'target'"),
    ("spec: number keys", {"spec.yaml": "1: a\nname: x\n"}, SPEC_RUN, "unknown field '1'"),
    ("spec: nested too deeply", {"spec.yaml": "array: " + "[" * 5000 + "]" * 5000 + "\n"}, SPEC_RUN,
     "nested too deeply"),
    ("spec: not text", {"spec.yaml": bytes(range(256))}, SPEC_RUN, "not a text file"),
    ("spec: missing file", {}, ["run", "zoo:mlp", "--hw", "{tmp}/nowhere.yaml", "--timing-only"],
     "cannot read spec file"),
    ("spec: mixed datapath", {"spec.yaml": "datatypes:\n  input: int8\n"}, SPEC_RUN, "datatypes.weight"),
    ("spec: technology table not text", {"spec.yaml": "technology: tech.yaml\n", "tech.yaml": bytes(range(256))},
     SPEC_RUN, "tech.yaml: not a YAML text file"),
    ("spec: technology table with a number key", {"spec.yaml": "technology: tech.yaml\n", "tech.yaml": "1: 2\n"},
     SPEC_RUN, "unknown field '1'"),
    # ---- inputs files ------------------------------------------------------------------------
    ("inputs: wrong key", {"mlp.onnx": mlp, "in.npz": lambda: npz(y=X)}, RUN_MLP, "missing input(s) x"),
    ("inputs: wrong shape", {"mlp.onnx": mlp, "in.npz": lambda: npz(x=np.zeros((1, 5), np.float32))}, RUN_MLP,
     "has shape [1, 5], the model expects [1, 16]"),
    ("inputs: complex numbers", {"mlp.onnx": mlp, "in.npz": lambda: npz(x=X.astype(np.complex64))}, RUN_MLP,
     "is an array of complex64"),
    ("inputs: strings", {"mlp.onnx": mlp, "in.npz": lambda: npz(x=np.full((1, 16), "a"))}, RUN_MLP,
     "is an array of <U1"),
    ("inputs: non-finite", {"mlp.onnx": mlp, "in.npz": lambda: npz(x=np.where(np.arange(16) == 3, np.nan, X))},
     RUN_MLP, "holds nan at index [0, 3]; inputs must be finite"),
    ("inputs: infinity", {"mlp.onnx": mlp, "in.npz": lambda: npz(x=np.full((1, 16), -np.inf, np.float32))},
     RUN_MLP, "inputs must be finite"),
    ("inputs: object array", {"mlp.onnx": mlp, "in.npz": lambda: npz(x=np.array([{"a": 1}], dtype=object))},
     RUN_MLP, "Object arrays cannot be loaded"),
    ("inputs: not an npz", {"mlp.onnx": mlp, "in.npz": "x = [1, 2, 3]\n"}, RUN_MLP, "not an .npz file"),
    ("inputs: truncated npz", {"mlp.onnx": mlp, "in.npz": lambda: npz(x=X)[:100]}, RUN_MLP, "cannot read inputs"),
    ("inputs: a single .npy", {"mlp.onnx": mlp, "in.npz": lambda: npy(X)}, RUN_MLP, "holds a single array"),
    ("inputs: absurd shape in the header", {"mlp.onnx": mlp, "in.npz": lambda: npz_with_header((10**6, 10**6))},
     RUN_MLP, "the limit is"),
    ("inputs: missing file", {"mlp.onnx": mlp}, RUN_MLP, "cannot read inputs"),
    ("inputs: floats for an 8-bit input", {"q.onnx": int8_model, "in.npz": lambda: npz(x=np.full((1, 16), 0.5))},
     ["run", "{tmp}/q.onnx", "--hw", INT8_SPEC, "--inputs", "{tmp}/in.npz"], "not uint8 integers"),
    # ---- sweep files -------------------------------------------------------------------------
    ("sweep: unknown parameter path", {"sweep.yaml": sweep_spec("parameters:\n  array.rowz: [4, 8]")}, SWEEP,
     "array.rowz"),
    ("sweep: empty list", {"sweep.yaml": sweep_spec("parameters:\n  array.rows: []")}, SWEEP, "at least one value"),
    ("sweep: empty range", {"sweep.yaml": sweep_spec("parameters:\n  array.rows: {min: 8, max: 4, step: 1}")},
     SWEEP, "min <= max"),
    ("sweep: unknown strategy", {"sweep.yaml": sweep_spec("strategy: annealing")}, SWEEP, "annealing"),
    ("sweep: unknown objective", {"sweep.yaml": sweep_spec("objectives: [latencyy]")}, SWEEP, "latencyy"),
    ("sweep: bad constraint expression", {"sweep.yaml": sweep_spec("constraints: ['array.rows *']")}, SWEEP,
     "cannot parse expression"),
    ("sweep: constraint calls a function", {"sweep.yaml": sweep_spec("constraints: [\"__import__('os')\"]")},
     SWEEP, "may be called"),
    ("sweep: negative budget", {"sweep.yaml": sweep_spec("strategy: random\nbudget: -1")}, SWEEP,
     "non-negative integer"),
    ("sweep: unknown section key", {"sweep.yaml": sweep_spec("paramters: {}")}, SWEEP, "unknown key 'paramters'"),
    ("sweep: non-finite parameter value", {"sweep.yaml": sweep_spec("parameters:\n  clock_ghz: [1.0, .inf]")},
     SWEEP, "finite"),
    ("sweep: unknown workload", {"sweep.yaml": sweep_spec("parameters:\n  array.rows: [4]",
                                                          workloads="[zoo:squeezent]")}, SWEEP, "squeezenet"),
    # ---- dse reprice: a report folder and a technology table ---------------------------------
    ("reprice: not a sweep folder", {"notes.txt": "a folder, no sweep in it\n"},
     ["reprice", "{tmp}", "--technology", "7nm"], "no results store"),
    ("reprice: unknown technology", {}, ["reprice", "{tmp}", "--technology", "3nm"], "allowed: 45nm, 7nm"),
]
# A sweep whose every point is infeasible is found only after the work (constraints may read area_mm2
# and the like): it prints progress, writes the report and ends with one error line and exit 2
# (tests/dse/test_cli.py, tests/dse/test_sweep.py), so it is not in this one-line corpus.


def _values(case) -> tuple:
    return case.values if hasattr(case, "values") else case


def _write(tmp_path: Path, files: dict) -> None:
    for name, content in files.items():
        content = content() if callable(content) else content
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _argv(argv, tmp_path) -> list:
    return [a.replace("{tmp}", str(tmp_path)) for a in argv]


def _check(code: int, err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit status {code}, stderr {err!r}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr is not one error line: {err!r}"
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.mark.parametrize("name, files, argv, fragment", CASES, ids=[_values(c)[0] for c in CASES])
def test_bad_input_is_one_error_line_and_exit_2(name, files, argv, fragment, tmp_path, capsys):
    _write(tmp_path, files)
    code = main(_argv(argv, tmp_path))
    _check(code, capsys.readouterr().err, fragment)


@pytest.mark.parametrize("name, files, argv, fragment", [c for c in CASES if _values(c)[0] in SUBPROCESS],
                         ids=list(SUBPROCESS))
def test_bad_input_from_a_real_process(name, files, argv, fragment, tmp_path):
    _write(tmp_path, files)
    proc = subprocess.run([sys.executable, "-m", "dse.cli", *_argv(argv, tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    _check(proc.returncode, proc.stderr, fragment)


def test_the_corpus_covers_every_kind_of_file():
    kinds = [_values(c)[0].split(":")[0] for c in CASES]
    assert len(CASES) >= 40 and {"model", "spec", "inputs", "sweep"} <= set(kinds)
