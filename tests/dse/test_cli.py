"""The `dse` command as a user runs it: run, compile, models, sweep, and bad input."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import helper

from dse import zoo
from dse.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "hwspecs" / "systolic.yaml")
INT8_SPEC = str(ROOT / "hwspecs" / "systolic_int8.yaml")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_the_zoo_with_macs(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    for name in zoo.NAMES:
        assert f"zoo:{name}" in out
    resnet = next(line for line in out.splitlines() if line.startswith("zoo:resnet50"))
    assert int(resnet.split()[1].replace(",", "")) > 3_000_000_000  # ResNet-50 is ~4 GMACs


def test_run_writes_outputs_and_stats(capsys, tmp_path):
    onnx.save(zoo.small_cnn(), tmp_path / "cnn.onnx")
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    code, out, _ = run_cli(capsys, "run", tmp_path / "cnn.onnx", "--hw", SPEC, "--inputs", tmp_path / "in.npz",
                           "--out", tmp_path / "r")
    assert code == 0 and "total_cycles" in out
    with np.load(tmp_path / "r" / "outputs.npz") as data:
        assert data.files == ["logits"] and data["logits"].shape == (1, 10)
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    for key in ("total_cycles", "latency_s", "macs", "layers", "engine_busy_cycles", "definitions"):
        assert key in stats
    layer = stats["layers"][0]
    for key in ("name", "op", "cycles", "compute_cycles", "stall_cycles", "utilisation", "bytes"):
        assert key in layer
    assert set(layer["bytes"]) == {"dram", "input_scratchpad", "weight_scratchpad", "accumulator"}


def test_run_timing_only_and_ideal_memory(capsys, tmp_path):
    code, _, _ = run_cli(capsys, "run", "zoo:mlp", "--hw", SPEC, "--timing-only", "--out", tmp_path / "t")
    assert code == 0 and not (tmp_path / "t" / "outputs.npz").exists()
    real = json.loads((tmp_path / "t" / "stats.json").read_text())["total_cycles"]
    run_cli(capsys, "run", "zoo:mlp", "--hw", SPEC, "--timing-only", "--ideal-memory", "--out", tmp_path / "i")
    ideal = json.loads((tmp_path / "i" / "stats.json").read_text())["total_cycles"]
    assert 0 < ideal < real


def test_compile_prints_one_line_per_instruction(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "compile", "zoo:mlp", "--hw", SPEC, "--dump-ir", tmp_path / "ir")
    assert code == 0
    assert "matmul" in out and "load_weights" in out and "store_tile" in out
    assert any(p.name.startswith("00_") for p in (tmp_path / "ir").iterdir())


def _tiny_spec(tmp_path, extra=""):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nworkloads: [zoo:mlp]\narray: {rows: 4, cols: 4}\n"
                    "sweep:\n  parameters:\n    array.rows: [4, 8]\n    memory.weight_scratchpad_kib: [0.01, 64]\n"
                    "  objectives: [latency_s, pe_count]\n" + extra)
    return path


def test_sweep_writes_results_and_report_and_records_infeasible(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sweep", _tiny_spec(tmp_path), "--out", tmp_path / "rep")
    assert code == 0 and "points/s" in err and "done: 4 points (2 feasible" in err
    df = pd.read_csv(tmp_path / "rep" / "results.csv")
    assert len(df) == 4
    assert df["feasible"].sum() == 2          # 10 B cannot hold one 4x4 weight fold (64 B)
    assert df.loc[~df["feasible"], "reason"].str.contains("no tile fits").all()
    points = pd.read_csv(tmp_path / "rep" / "points.csv")
    assert len(points) == 4 and points["on_front"].sum() >= 1
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "best latency vs array size" in html and "pe_count vs latency_s" in html and "plotly" in html


def test_pareto_and_export_read_a_finished_sweep(capsys, tmp_path):
    run_cli(capsys, "sweep", _tiny_spec(tmp_path), "--out", tmp_path / "rep")
    code, out, _ = run_cli(capsys, "pareto", tmp_path / "rep", "--objectives", "latency,utilisation:max")
    assert code == 0 and "latency_s (s)" in out and "utilisation (fraction)" in out
    code, out, _ = run_cli(capsys, "export", tmp_path / "rep", "--format", "parquet")
    assert code == 0 and len(pd.read_parquet(tmp_path / "rep" / "evaluations.parquet")) == 4
    assert "no finished sweep" in _error_line(capsys, "pareto", tmp_path / "nowhere")


def test_bad_sweep_option_is_one_clear_error(capsys, tmp_path):
    line = _error_line(capsys, "sweep", _tiny_spec(tmp_path), "--out", tmp_path / "r", "--strategy", "nsga2")
    assert "sweep.budget" in line and "nsga2" in line
    assert "less than the grid" in _error_line(capsys, "sweep", _tiny_spec(tmp_path), "--out", tmp_path / "r",
                                               "--budget", "2")


def _error_line(capsys, *argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_truncated_model_is_one_clear_error(capsys, tmp_path):
    data = (zoo.light_dir() / "light_squeezenet.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:200])
    assert "cut.onnx" in _error_line(capsys, "run", tmp_path / "cut.onnx", "--hw", SPEC, "--timing-only")


def test_unsupported_op_names_op_node_and_supported_list(capsys, tmp_path):
    graph = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], name="hm0")], "g",
                              [helper.make_tensor_value_info("x", 1, [1, 4])],
                              [helper.make_tensor_value_info("y", 1, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "hm.onnx")
    line = _error_line(capsys, "run", tmp_path / "hm.onnx", "--hw", SPEC, "--timing-only")
    assert "Hardmax" in line and "hm0" in line and "Conv" in line


def test_typo_in_spec_key_names_file_and_field(capsys, tmp_path):
    (tmp_path / "typo.yaml").write_text("array:\n  rowz: 8\n")
    line = _error_line(capsys, "run", "zoo:mlp", "--hw", tmp_path / "typo.yaml", "--timing-only")
    assert "typo.yaml" in line and "array.rowz" in line and "rows" in line


def test_tile_that_cannot_fit_is_one_clear_error(capsys, tmp_path):
    (tmp_path / "small.yaml").write_text("memory:\n  input_scratchpad_kib: 1\n")
    line = _error_line(capsys, "run", "zoo:resnet50", "--hw", tmp_path / "small.yaml", "--timing-only")
    assert "no tile fits" in line


def test_error_exit_code_and_no_traceback_from_a_real_process(tmp_path):
    (tmp_path / "typo.yaml").write_text("array:\n  rowz: 8\n")
    proc = subprocess.run([sys.executable, "-m", "dse.cli", "run", "zoo:mlp", "--hw", str(tmp_path / "typo.yaml")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_default_spec_sweep_runs(capsys, tmp_path):
    code, _, _ = run_cli(capsys, "sweep", SPEC, "--out", tmp_path / "demo")
    assert code == 0 and (tmp_path / "demo" / "index.html").exists()


def test_readme_commands_run(capsys, tmp_path):
    """The README's `dse` lines, with outputs redirected to tmp_path."""
    onnx.save(zoo.mlp(), tmp_path / "model.onnx")
    np.savez(tmp_path / "in.npz", x=np.ones((1, 784), np.float32))
    readme = (ROOT / "README.md").read_text()
    commands = [line.split("#")[0].split()[1:] for line in readme.splitlines() if line.startswith("dse ")]
    assert len(commands) >= 12
    for argv in commands:
        argv = [a for a in argv if not (a.startswith("[") or a.endswith("]"))]
        argv = [str(tmp_path / "model.onnx") if a == "model.onnx" else str(tmp_path / "in.npz") if a == "in.npz"
                else str(tmp_path / a) if a.startswith("runs/") else str(ROOT / a) if a.startswith("hwspecs/")
                else str(tmp_path / "sweep") if a == "reports/systolic"
                else str(tmp_path / a) if a.startswith("reports/") else a
                for a in argv]
        if argv[0] == "sweep":
            if "--out" not in argv:  # one folder per study: a line with its own --out keeps it
                argv += ["--out", str(tmp_path / "sweep")]
            (tmp_path / "quick.yaml").write_text("name: quick\nworkloads: [zoo:mlp]\nsweep:\n  parameters:\n    array.rows: [8, 16]\n")
            argv[1] = str(tmp_path / "quick.yaml")  # the default spec's sweep runs in make demo
        code, _, err = run_cli(capsys, *argv)
        assert code == 0, (argv, err)


def test_verify_checks_front_points_functionally_and_fails_loudly(capsys, tmp_path, monkeypatch):
    code, _, err = run_cli(capsys, "sweep", _tiny_spec(tmp_path), "--out", tmp_path / "rep", "--verify", "1")
    assert code == 0 and "verify ok" in err and "onnxruntime" in err
    checks = pd.read_csv(tmp_path / "rep" / "verify.csv")
    assert len(checks) == 1 and checks["ok"].all() and checks["max_abs_error"].iloc[0] < 1e-5

    from dse import verify
    real = verify.reference

    def off_by_a_little(workload, program):  # a reference the simulator cannot match
        inputs, outputs, source = real(workload, program)
        return inputs, {k: v + 1e-3 for k, v in outputs.items()}, source
    monkeypatch.setattr(verify, "reference", off_by_a_little)
    code, _, err = run_cli(capsys, "sweep", _tiny_spec(tmp_path), "--out", tmp_path / "rep", "--verify", "1")
    assert code == 1 and "verify FAIL" in err


def test_quantised_model_runs_bit_exact_on_the_int8_spec(capsys, tmp_path):
    """The issue's `dse run model.int8.onnx --hw ... --inputs in.npz --out runs/q`: outputs equal
    onnxruntime's bit for bit."""
    from tests.quant_models import ort_outputs, quant_model_path
    path = quant_model_path("mlp", "qoperator", False, "uint8", "int8", 0)
    x = np.random.default_rng(3).standard_normal((1, 784)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    code, out, _ = run_cli(capsys, "run", path, "--hw", INT8_SPEC, "--inputs", tmp_path / "in.npz",
                           "--out", tmp_path / "q")
    assert code == 0 and "cycles" in out
    got = dict(np.load(tmp_path / "q" / "outputs.npz"))
    want = ort_outputs(path, {"x": x})
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)


def test_quantised_model_on_a_float_spec_and_float_model_on_the_int8_spec_are_clear_errors(capsys):
    from tests.quant_models import quant_model_path
    path = quant_model_path("mlp", "qoperator", False, "uint8", "int8", 0)
    line = _error_line(capsys, "run", path, "--hw", SPEC, "--timing-only")
    assert "quantised" in line and "integer datapath" in line and "systolic_int8.yaml" in line
    line = _error_line(capsys, "run", "zoo:mlp", "--hw", INT8_SPEC, "--timing-only")
    assert "fc0" in line and "dse quantize" in line and "float" in line


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "hwspecs").glob("*.yaml") if p.name != "systolic.yaml"))
def test_every_bundled_spec_sweeps_its_space_and_verifies_a_front_point(capsys, tmp_path, monkeypatch, name):
    """Each bundled spec's own sweep and workloads (systolic.yaml's runs in test_default_spec_sweep_runs);
    the int8 spec's quantised workloads are made in a fresh cache and verified bit for bit."""
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = run_cli(capsys, "sweep", ROOT / "hwspecs" / name, "--out", tmp_path / "r", "--verify", "1")
    assert code == 0, err
    assert "verify ok" in err and "verify FAIL" not in err
    points = pd.read_csv(tmp_path / "r" / "points.csv")
    assert len(points) >= 8 and points["feasible"].all()


# ---- mistakes caught before work (issue 13) --------------------------------------------------

def test_misspelt_workload_in_a_sweep_exits_2_before_any_evaluation(capsys, tmp_path):
    spec = _tiny_spec(tmp_path)
    spec.write_text(spec.read_text().replace("zoo:mlp", "zoo:squeezent"))
    line = _error_line(capsys, "sweep", spec, "--out", tmp_path / "rep")
    assert line.startswith(f"error: {spec}: workloads[0]: unknown zoo model 'squeezent'; "
                           "did you mean 'zoo:squeezenet'? available: zoo:alexnet")
    assert not (tmp_path / "rep").exists()


def test_misspelt_zoo_model_in_run_and_compile_suggests_the_name(capsys):
    assert "did you mean 'zoo:squeezenet'?" in _error_line(capsys, "run", "zoo:squeezent", "--hw", SPEC,
                                                          "--timing-only")
    assert "did you mean 'zoo:mlp'?" in _error_line(capsys, "compile", "zoo:mpl", "--hw", SPEC)


def test_nan_clock_is_one_clear_error_not_a_nan_latency(capsys, tmp_path):
    (tmp_path / "nan.yaml").write_text("clock_ghz: .nan\n")
    line = _error_line(capsys, "run", "zoo:mlp", "--hw", tmp_path / "nan.yaml", "--timing-only")
    assert line == f"error: {tmp_path / 'nan.yaml'}: field 'clock_ghz' is nan; must be a finite number >= 0.001"


def test_all_infeasible_sweep_exits_2_with_its_most_common_reason_and_keeps_the_report(capsys, tmp_path):
    spec = _tiny_spec(tmp_path)
    spec.write_text(spec.read_text().replace("[0.01, 64]", "[0.01, 0.02]"))
    code, _, err = run_cli(capsys, "sweep", spec, "--out", tmp_path / "rep")
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert last.startswith(f"error: {spec}: no feasible design point; most common reason (4 of 4 points): "
                           "zoo:mlp: layer 'fc0': no tile fits")
    assert "done: 4 points (0 feasible" in err and err.count("no tile fits") == 1
    assert len(pd.read_csv(tmp_path / "rep" / "points.csv")) == 4 and (tmp_path / "rep" / "index.html").exists()
