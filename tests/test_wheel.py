"""The wheel works on its own: built offline from a copy of the sources, installed into a
fresh venv outside the repository (dependencies borrowed from this interpreter's
site-packages through a .pth file, so nothing is downloaded), then `dse` runs from a
folder outside the repository with the bundled specs and technology tables."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from: pyproject.toml and the folders it packages.
SOURCES = ("pyproject.toml", "compiler", "sim", "dse", "hwspecs")
TINY_SPEC = """\
name: tiny
technology: 45nm
workloads: [zoo:mlp]
sweep:
  parameters:
    array.rows: [8, 16]
    technology: [45nm, 7nm]
"""


def _run(argv, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder of a fresh venv holding only the wheel, environment, work folder)."""
    try:
        import setuptools.command.bdist_wheel  # noqa: F401 - setuptools>=70.1 builds wheels itself
    except ImportError:
        pytest.fail("building the wheel needs setuptools>=70.1: pip install -e '.[test]'")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: an in-tree build would write build/ and *.egg-info into the repo
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    _check(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                 "-w", tmp / "dist", source], cwd=tmp))
    [wheel] = (tmp / "dist").glob("accel_dse-*.whl")
    venv = tmp / "venv"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp))
    python = venv / "bin" / "python"
    purelib = Path(_check(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               cwd=tmp)).stdout.strip())
    # Dependencies only: .pth files in these folders are not run, so this interpreter's
    # editable install of accel-dse (an import hook installed by a .pth) stays out.
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (purelib / "dependencies.pth").write_text("".join(f"{d}\n" for d in deps))
    _check(_run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
                cwd=tmp))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["DSE_CACHE_DIR"] = str(tmp / "cache")
    work = tmp / "work"
    work.mkdir()
    imported = _check(_run([python, "-c", "import compiler, dse; print(dse.__file__); print(compiler.__file__)"],
                           cwd=work, env=env)).stdout.split()
    assert all(Path(f).is_relative_to(venv) for f in imported), imported
    return venv / "bin", env, work


def test_installed_wheel_runs_the_default_spec_from_any_folder(installed):
    bin_dir, env, work = installed
    out = _check(_run([bin_dir / "dse", "run", "zoo:mlp", "--timing-only"], cwd=work, env=env)).stdout
    assert "total_cycles" in out and "(45nm)" in out
    bad = _run([bin_dir / "dse", "compile", "zoo:mlp", "--hw", "systolc"], cwd=work, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "systolic, systolic_bf16, systolic_fp16, systolic_int8" in bad.stderr


def test_installed_wheel_sweeps_with_bundled_tables_in_worker_processes(installed):
    bin_dir, env, work = installed
    (work / "tiny.yaml").write_text(TINY_SPEC)
    _check(_run([bin_dir / "dse", "sweep", "tiny.yaml", "--out", "r2", "--workers", "2"], cwd=work, env=env))
    for name in ("points.csv", "results.csv", "results.sqlite", "index.html"):
        assert (work / "r2" / name).is_file(), name
    points = (work / "r2" / "points.csv").read_text()
    assert "7nm" in points and "45nm" in points
