"""`dse sweep --verify N`: run the functional simulation of N Pareto-front design
points and check their outputs against each workload's reference.

The sweep itself is timing-only; this closes the loop on the points a user is
about to act on. References: the onnx package's shipped output for the bundled
light models (their backend-test input, batch 1); onnxruntime on seeded inputs
for anything else when it is installed. Quantised models (integer datapath) must
equal onnxruntime's outputs bit for bit (docs/int8_datapath.md), on a model onnxruntime computes
exactly on this CPU (dse/ort_oracle.py: its int8 weights moved to uint8 where the uint8 x int8
kernel saturates); each check names the oracle it used. The simulator's outputs always come from
executing the Program (dse.run); the reference runtime only checks them.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.errors import SpecError
from compiler.targets import lower
from dse import zoo
from dse.api import random_inputs
from dse.ort_oracle import oracle_model
from dse.workloads import graph_of, model_of
from sim import simulate

RTOL, ATOL = 1e-4, 1e-5  # fp32 summation-order noise allowance, as in tests/e2e
# Unit roundoff of the narrow float types (8 and 11 significant bits). A narrow datapath
# is checked by relative L2 error <= u sqrt(L) over L conv/gemm layers: about one u of
# fresh rounding per layer, adding in quadrature (tests/e2e/test_low_precision_models.py
# measures 0.18-0.6 of this bound on the nine light models).
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}


def shipped_reference(name: str):
    """(inputs, outputs) the onnx package ships for a light zoo model: the backend
    test's input arange(n)/n and the output its authors recorded."""
    stem = zoo.LIGHT[name]
    model = onnx.load(str(zoo.light_dir() / f"{stem}.onnx"), load_external_data=False)
    initialisers = {t.name for t in model.graph.initializer}
    inputs = {}
    for value in model.graph.input:
        if value.name in initialisers:
            continue
        shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        inputs[value.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    output = numpy_helper.to_array(onnx.load_tensor(str(zoo.light_dir() / f"{stem}_output_0.pb")))
    return inputs, {model.graph.output[0].name: output}


def reference(workload, program):
    """(inputs, expected outputs or None, where the reference comes from) for a workload."""
    name = workload.model[4:] if workload.model.startswith("zoo:") else None
    if name in zoo.LIGHT and workload.batch == 1 and not workload.quantize and not workload.random_weights:
        inputs, outputs = shipped_reference(name)
        return inputs, outputs, "onnx package reference output"
    inputs = random_inputs(program, seed=0)
    expected, source = onnxruntime_reference(model_of(workload), inputs, f"--verify of {workload.label}")
    return inputs, expected, f"{source}, seeded inputs"


def onnxruntime_reference(model, inputs: dict, what: str):
    """(onnxruntime's outputs on a model it computes exactly on this CPU, or None; the oracle's line)."""
    try:
        import onnxruntime  # noqa: F401 (whether it is installed)
    except ImportError:
        raise SpecError(f"{what}: no reference; install onnxruntime (pip install onnxruntime) "
                        "to check it") from None
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    exact, oracle = oracle_model(proto)
    if exact is None:
        return None, oracle
    return _run_onnxruntime(exact, inputs), f"{oracle}, CPU provider"


def _run_onnxruntime(model: onnx.ModelProto, inputs: dict) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def float_path_gap(model, inputs: dict, outputs: dict) -> float:
    """Max |simulated - onnxruntime's own run of the model as given|: for an S8S8 QDQ model, whose
    reference is its QOperator equivalent, the distance to onnxruntime's x86 float path."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    return max(float(np.max(np.abs(outputs[k].astype(np.float64) - v)))
               for k, v in _run_onnxruntime(proto, inputs).items())


def verify(spec, workload) -> dict:
    """Functional simulation of one design point on one workload, against its reference."""
    program = lower(graph_of(workload), spec)
    inputs, expected, source = reference(workload, program)
    outputs = simulate(program, inputs).outputs if expected is not None else {}
    return {"workload": workload.label, **compare(spec, program, outputs, expected, source)}


def compare(spec, program, outputs: dict, expected, source: str) -> dict:
    """The verdict on simulated outputs against a reference's, by the datapath's criterion:
    bit-identical on integer datapaths, rtol/atol on fp32, relative L2 <= u sqrt(L) on bf16/fp16.
    `expected` None (no exact reference on this CPU) gives ok None: not checked, never a pass."""
    if expected is None:
        return {"reference": source, "max_abs_error": float("nan"), "ok": None, "criterion": "not checked"}
    narrow = [UNIT_ROUNDOFF[t] for t in (spec.datatypes.input, spec.datatypes.weight, spec.datatypes.output)
              if t in UNIT_ROUNDOFF]
    layers = sum(layer.op in ("conv", "gemm") for layer in program.layers)
    bound = max(narrow) * np.sqrt(max(layers, 1)) if narrow else None
    exact = spec.integer_datapath
    worst, ok = 0.0, True
    for name, want in expected.items():
        got = outputs[name]
        if got.shape != want.shape:
            ok, worst = False, float("inf")
            continue
        if not np.isfinite(got).all() and np.isfinite(want).all():
            ok, worst = False, float("inf")      # overflow (a narrow float's range exceeded)
            continue
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))))
        if exact:
            ok &= bool(np.array_equal(got, want))
        elif bound is None:
            ok &= bool(np.allclose(got, want, rtol=RTOL, atol=ATOL))
        else:
            scale = float(np.linalg.norm(want)) or 1.0
            ok &= float(np.linalg.norm(got.astype(np.float64) - want)) / scale <= bound
    criterion = ("bit-identical" if exact else f"rtol {RTOL:g}, atol {ATOL:g}" if bound is None
                 else f"relative L2 <= {bound:.3g} (u sqrt(L))")
    return {"reference": source, "max_abs_error": worst, "ok": ok, "criterion": criterion}


def verify_front(space, points: dict, workloads, count: int, stream) -> list:
    """Verify up to `count` front points (best first objective first); print and return the checks."""
    ranked = sorted((p for p in points.values() if p.on_front), key=lambda p: _first_objective(space, p))
    checks = []
    for p in ranked[:count]:
        spec = space.spec_of(p.point)
        for workload in workloads:
            check = {**p.point, **verify(spec, workload)}
            checks.append(check)
            params = ", ".join(f"{k}={v}" for k, v in p.point.items())
            verdict = "n/a " if check["ok"] is None else "ok  " if check["ok"] else "FAIL"
            print(f"verify {verdict} {workload.label} at {params}: max |error| "
                  f"{check['max_abs_error']:.3g} vs {check['reference']} ({check['criterion']})",
                  file=stream, flush=True)
    return checks


def _first_objective(space, p) -> float:
    o = space.objectives[0]
    return p.metrics[o.name] * o.sign
