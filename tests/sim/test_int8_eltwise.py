"""The simulator's quantised element-wise ops against onnxruntime: QLinearAdd (two FMAs, with the
operand swap onnxruntime makes when `a` is constant along the innermost span) and QLinearMul on
every pair of 8-bit codes, in every broadcast layout, with random scales and zero points (the
cases of tests/sim/test_quant_golden.py, run through the front end, the lowering and the vector
unit on the integer spec instead of through the golden model)."""
import numpy as np

from compiler.pipeline import compile_graph
from compiler.spec import load
from compiler.targets import lower
from sim import simulate
from tests.sim.test_quant_golden import (_assert_same, _layout, _node, _require_fma_kernels, _run, _sweep,
                                         binary_cases, single_op_model)

INT8 = load("hwspecs/systolic_int8.yaml")


def _check_binary_simulated(case):
    _require_fma_kernels()
    op, dtype, layout, scalar, as_, az, bs, bz, cs, cz = case
    a, b = _layout(layout, dtype, scalar)
    nodes = [_node(op, ["a", "as_", "az", "b", "bs", "bz", "cs", "cz"])]
    feeds, consts = {"a": a, "b": b}, {"as_": as_, "az": az, "bs": bs, "bz": bz, "cs": cs, "cz": cz}
    program = lower(compile_graph(single_op_model(nodes, feeds, consts, dtype)), INT8)
    _assert_same(simulate(program, feeds).outputs["y"], _run(nodes, feeds, consts, dtype))


test_qlinear_add_mul_simulated, test_qlinear_add_mul_simulated_sweep = _sweep(binary_cases(), _check_binary_simulated, 25)


def test_qlinear_add_swaps_its_operands_as_onnxruntime_does():
    """A scale set where X = a and X = b round differently on 4 of the 65,536 code pairs (found by
    searching the golden model): `a` constant along the innermost span, so onnxruntime swaps."""
    case = ("QLinearAdd", np.uint8, "a_span_scalar", np.uint8(0), np.float32(0.54990757), np.uint8(100),
            np.float32(0.1834063), np.uint8(219), np.float32(0.00010255433), np.uint8(141))
    _check_binary_simulated(case)
