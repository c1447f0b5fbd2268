"""Fuzz the inputs path of `dse run --inputs x.npz`, through the real CLI in process: .npz
files with right, wrong, extra or missing names, shapes that fit or not, every NumPy dtype
kind (bool, ints, floats, complex, strings, bytes, dates, records, objects), NaN and
infinity, and valid files truncated or with bytes changed, for a small float model and a
small uint8 model. The command must finish with exit status 0, or 2 and one line on stderr."""
from __future__ import annotations

import contextlib
import functools
import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from dse import zoo
from dse.cli import main
from tests.fuzz.contract import FAST, SLOW, holds, rarely

ROOT = Path(__file__).resolve().parents[2]
SPEC = {"fp32": str(ROOT / "hwspecs" / "systolic.yaml"), "uint8": str(ROOT / "hwspecs" / "systolic_int8.yaml")}
SHAPE = (1, 16)
NAMES = ("x", "x", "x", "X", "y", "", "x.npy", "x/y", "logits", "a" * 300)
DTYPES = (np.float32, np.float32, np.float64, np.float16, np.uint8, np.int8, np.int64, np.uint64, np.bool_,
          np.complex64, "U3", "S2", "datetime64[s]", [("a", np.float32)], object)


def int8_model() -> onnx.ModelProto:
    """uint8 x[1, 16] -> QLinearMatMul with int8 weights -> uint8 y[1, 4]."""
    consts = {"xs": np.float32(0.05), "xz": np.uint8(128), "w": np.arange(64, dtype=np.int8).reshape(16, 4),
              "ws": np.float32(0.02), "wz": np.int8(0), "ys": np.float32(0.1), "yz": np.uint8(128)}
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="qmm")
    graph = helper.make_graph([node], "int8", [helper.make_tensor_value_info("x", TensorProto.UINT8, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@functools.lru_cache(maxsize=None)
def model_file(kind: str, folder: str) -> str:
    path = Path(folder) / f"{kind}.onnx"
    onnx.save(zoo.mlp(sizes=(SHAPE[1], 8, 4)) if kind == "fp32" else int8_model(), path)
    return str(path)


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 17), max_size=3))) if rarely(draw, 4) else SHAPE
    size = int(np.prod(shape))
    values = np.asarray(draw(st.lists(st.sampled_from((0, 1, 3, -1, 255, 300, 0.5, np.nan, np.inf, -np.inf)),
                                      min_size=size, max_size=size)), np.float64).reshape(shape)
    with np.errstate(all="ignore"):
        if dtype.kind in "biufc":
            return values.astype(dtype)
        return np.zeros(shape, dtype)


@st.composite
def input_files(draw) -> tuple:
    """(model kind, arrays by name, byte edits of the written file)."""
    content = draw(st.dictionaries(st.sampled_from(NAMES), arrays(), max_size=3))
    edits = []
    if rarely(draw, 4):
        edits = draw(st.lists(st.tuples(st.sampled_from(("truncate", "set")), st.integers(0, 4000),
                                        st.integers(0, 255)), min_size=1, max_size=3))
    return draw(st.sampled_from(("fp32", "uint8"))), content, tuple(edits)


def write(path: Path, content: dict, edits) -> None:
    with open(path, "wb") as file:
        np.savez(file, **content)
    data = bytearray(path.read_bytes())
    for kind, at, value in edits:
        if not data:
            break
        at = min(at, len(data) - 1)
        if kind == "truncate":
            del data[at:]
        else:
            data[at] = value
    path.write_bytes(bytes(data))


def run(argv: list) -> tuple:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def check(tmp_path_factory, case) -> None:
    kind, content, edits = case
    folder = tmp_path_factory.mktemp("inputs")
    path = folder / "in.npz"
    write(path, content, edits)
    code, err = holds(run, ["run", model_file(kind, str(tmp_path_factory.getbasetemp())), "--hw", SPEC[kind],
                            "--inputs", str(path)])
    assert code == 0 or (code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")), (code, err)


@FAST
@given(case=input_files())
@example(case=("fp32", {"x": np.zeros(SHAPE, np.complex64)}, ()))        # imaginary part dropped silently
@example(case=("uint8", {"x": np.array([["a"] * 16])}, ()))                # strings reached np.rint: TypeError
@example(case=("fp32", {"x": np.full(SHAPE, np.nan, np.float32)}, ()))     # non-finite inputs are refused
def test_input_files_run_or_are_refused(tmp_path_factory, case):
    check(tmp_path_factory, case)


@pytest.mark.slow
@SLOW
@given(case=input_files())
def test_input_files_many(tmp_path_factory, case):
    check(tmp_path_factory, case)
