"""`dse --help` answers without loading the heavy modules (onnx, Numba, pandas, plotly, optuna):
they are imported on first use, so the answer comes in well under a second. Checked by what is
imported, not by timing (machines are shared and noisy)."""
import subprocess
import sys

HEAVY = ("onnx", "numba", "pandas", "plotly", "optuna", "onnxruntime", "scipy")
SCRIPT = """
import sys
from dse.cli import _parser
try:
    _parser().parse_args(["--help"])
except SystemExit:
    pass
print("loaded:", sorted(m for m in {heavy!r} if m in sys.modules))
"""


def test_help_imports_no_heavy_module():
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=HEAVY)], capture_output=True, text=True,
                         check=True)
    assert "usage: dse" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "loaded: []", out.stdout.strip().splitlines()[-1]


def test_the_api_still_reads_as_before():
    """Also after the modules behind them are imported (dse.sweeper, dse.repricer: named apart from
    their functions, so importing them never shadows `dse.sweep` or `dse.reprice`)."""
    import dse
    import dse.repricer
    import dse.sweeper
    import sim
    assert callable(dse.run) and callable(dse.sweep) and callable(dse.reprice) and callable(sim.simulate)
    assert dse.sweep is dse.sweeper.sweep and dse.load is dse.sweeper.load
