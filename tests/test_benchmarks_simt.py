"""Smoke test of benchmarks/validate_simt.py --quick: every kind of case (GEMM, stream, int8 ResNet-50)
runs on both GPU presets through the real path and prints its table row with a finite prediction."""
import math

from benchmarks.validate_simt import SOURCES, main


def test_quick_validation_prints_the_table_with_finite_predictions(tmp_path, capsys):
    rows = main(["--quick", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert {r.case.kind for r in rows} == {"gemm", "stream", "network"}
    assert {r.case.preset for r in rows} == {"gpu_a100_like", "gpu_h100_like"}
    for r in rows:
        assert r.predicted is not None and math.isfinite(r.predicted) and r.predicted > 0, r
        assert r.case.source in SOURCES
    for word in ("predicted", "published", "error %", "source", "resnet50 int8 batch 2048", "samples/s",
                 "TFLOPS", "GB/s", "Sources:"):
        assert word in out, word
    assert len(list(tmp_path.glob("resnet50.int8.*.onnx"))) == 1   # quantised once, kept for the next run
