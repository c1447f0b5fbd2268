"""The `dse` command: run, compile, models, sweep. User errors (CompileError,
SpecError, SimError, unreadable files) print one line and exit 2."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from compiler.bundled import DEFAULT_SPEC, spec_names
from compiler.errors import CompileError, SpecError
from dse.space import STRATEGIES
from sim.errors import SimError

USER_ERRORS = (CompileError, SpecError, SimError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dse", description="Accelerator design-space explorer")
    sub = p.add_subparsers(dest="command", required=True)
    bundled = f"a bundled spec by name ({', '.join(spec_names())}) or a spec YAML path"
    hw_help = f"hardware spec: {bundled} (default: {DEFAULT_SPEC})"
    r = sub.add_parser("run", help="compile a model for a spec and simulate it")
    r.add_argument("model", help="path to .onnx or zoo:NAME (see `dse models`)")
    r.add_argument("--hw", default=DEFAULT_SPEC, help=hw_help)
    r.add_argument("--inputs", help=".npz with one array per graph input (default: seeded random)")
    r.add_argument("--timing-only", action="store_true", help="walk the instructions without arithmetic")
    r.add_argument("--ideal-memory", action="store_true", help="free data movement: compute-only cycles")
    r.add_argument("--out", help="write outputs.npz and stats.json here")
    r.add_argument("--verify", action="store_true",
                   help="check the outputs against onnxruntime on the same inputs (exact on every CPU for "
                        "integer models; the line names the oracle); exit 1 if they differ")
    c = sub.add_parser("compile", help="print the Program, one line per instruction")
    c.add_argument("model")
    c.add_argument("--hw", default=DEFAULT_SPEC, help=hw_help)
    c.add_argument("--dump-ir", help="also write the Graph after each pass into this folder")
    c.add_argument("--mapping", action="store_true",
                   help="print each layer's mapping (unit, dataflow, tiles, loop order) instead of the Program")
    sub.add_parser("models", help="list bundled workloads (zoo:NAME) with MACs and parameters")
    s = sub.add_parser("sweep", help="explore the spec's design space; results store, points.csv, index.html")
    s.add_argument("spec", help=bundled)
    s.add_argument("--out", help="report folder (default reports/<spec name>)")
    s.add_argument("--strategy", choices=STRATEGIES, help="override sweep.strategy")
    s.add_argument("--budget", type=int, help="design points to evaluate (random, lhs, nsga2)")
    s.add_argument("--seed", type=int, help="override sweep.seed")
    s.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    s.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786): run on that cluster")
    s.add_argument("--verify", type=int, default=0, metavar="N",
                   help="simulate N Pareto points functionally and check outputs against references")
    s.add_argument("--resume", action="store_true",
                   help="finish an interrupted sweep (re-running always skips what the store holds)")
    s.add_argument("--force", action="store_true",
                   help="replace another study's results in the report folder (otherwise refused)")
    pa = sub.add_parser("pareto", help="print the Pareto front of a finished sweep")
    pa.add_argument("folder", help="a sweep's report folder")
    pa.add_argument("--objectives", help="comma-separated metrics (default: the sweep's); name:max to maximise")
    rp = sub.add_parser("report", help="rebuild a sweep's index.html from its store (no re-simulation), or "
                                       "compare several sweeps on one page (--compare)")
    rp.add_argument("folder", nargs="+", help="a sweep's report folder (two or more with --compare)")
    rp.add_argument("--compare", action="store_true",
                    help="one page across the folders' studies (and targets): shared axes, one joint front, one table")
    rp.add_argument("--out", help="--compare: the folder to write the comparison's index.html into")
    rp.add_argument("--open", action="store_true", help="open the page in the web browser")
    rr = sub.add_parser("reprice", help="price a finished sweep again with another technology table (no "
                                        "re-simulation) into a new report folder")
    rr.add_argument("folder", help="a sweep's report folder (left as it is)")
    rr.add_argument("--technology", required=True,
                    help="a bundled table's name (hwspecs/tech/<name>.yaml, e.g. 7nm) or a path to a .yaml table")
    rr.add_argument("--out", help="report folder to write (default FOLDER-<table name>)")
    rr.add_argument("--force", action="store_true", help="replace what a non-empty --out holds (otherwise refused)")
    e = sub.add_parser("export", help="write a sweep's stored evaluations as CSV or Parquet")
    e.add_argument("folder")
    e.add_argument("--format", choices=("csv", "parquet"), default="csv")
    e.add_argument("--out", help="file to write (default FOLDER/evaluations.FORMAT)")
    q = sub.add_parser("quantize", help="static int8 quantisation through onnxruntime (QDQ or QOperator)")
    q.add_argument("model", help="path to .onnx or zoo:NAME")
    q.add_argument("--out", required=True, help="quantised model to write (.onnx)")
    q.add_argument("--format", choices=("qdq", "qoperator", "dynamic"), default="qdq",
                   help="QuantizeLinear/DequantizeLinear pairs (qdq), integer operators (qoperator), or "
                        "dynamic quantisation (activations quantised at run time; no calibration)")
    q.add_argument("--per-channel", action="store_true", help="one weight scale per output channel")
    q.add_argument("--calibration-samples", type=int, default=16, metavar="N",
                   help="seeded standard-normal calibration inputs (default 16)")
    q.add_argument("--calibration-data", metavar="X.NPZ",
                   help="calibration inputs: one key per graph input, optional leading sample axis")
    q.add_argument("--activation-type", choices=("uint8", "int8"), default="uint8")
    q.add_argument("--weight-type", choices=("int8", "uint8"), default="int8")
    q.add_argument("--seed", type=int, default=0, help="seed of the random calibration inputs")
    pc = sub.add_parser("probe-cpu", help="write a CPU spec for this machine (cpuinfo, lscpu's caches, a short "
                                          "clock, latency and bandwidth probe)")
    pc.add_argument("--out", help="spec file to write (default: print it)")
    return p


def _load_inputs(path: str) -> dict:
    """`--inputs`: the .npz's arrays by name (dse/npz.py); a float holding NaN or infinity is
    refused, since in a file of inputs it is a data bug rather than a value to simulate."""
    from dse.npz import read_arrays
    inputs = read_arrays(path, SimError, "inputs")
    for name, value in inputs.items():
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            where = np.argwhere(~np.isfinite(value))[0].tolist()
            raise SimError(f"{path}: input '{name}' holds {value[tuple(where)]} at index {where}; "
                           "inputs must be finite")
    return inputs


def _summary(stats) -> str:
    lines = [f"total_cycles       {stats.total_cycles:>16,d} cycles",
             f"latency            {stats.latency_s * 1e3:>16.4f} ms",
             f"macs               {stats.macs:>16,d} MACs",
             f"utilisation        {stats.utilisation:>16.3f} (MACs / (cycles x peak MACs per cycle))",
             f"dram traffic       {stats.bytes['dram']:>16,d} bytes",
             f"energy             {stats.energy_j * 1e3:>16.4f} mJ per run ({stats.technology})",
             f"power              {stats.power_w:>16.4f} W (energy / latency)",
             f"area               {stats.area_mm2:>16.4f} mm^2"]
    lines += [f"busy {e:<13} {v:>16,d} cycles" for e, v in stats.engine_busy_cycles.items()]
    return "\n".join(lines)


def cmd_run(args) -> int | None:
    import dse
    if args.verify and args.timing_only:
        raise SpecError("--verify checks a functional run's outputs; drop --timing-only")
    inputs = _load_inputs(args.inputs) if args.inputs else None
    result = dse.run(args.model, hw=args.hw, inputs=inputs, timing_only=args.timing_only,
                     ideal_memory=args.ideal_memory)
    if inputs is None and not args.timing_only:
        print("inputs: seeded random (seed 0: standard-normal floats, uniform codes for 8-bit inputs); "
              "pass --inputs x.npz to choose them")
    print(_summary(result.stats))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if result.outputs:
            np.savez(out / "outputs.npz", **result.outputs)
        (out / "stats.json").write_text(json.dumps(result.stats.to_dict(), indent=1))
        print(f"wrote {out}/stats.json" + (" and outputs.npz" if result.outputs else ""))
    if args.verify:
        return _verify_run(args, result, inputs)


def _verify_run(args, result, inputs) -> int:
    """`dse run --verify`: the run's outputs against onnxruntime's on the same inputs."""
    from dse.api import load_spec, random_inputs
    from dse.verify import compare, float_path_gap, onnxruntime_reference
    from dse.zoo import resolve
    used = inputs if inputs is not None else random_inputs(result.program, 0)
    expected, source = onnxruntime_reference(resolve(args.model), used, "--verify")
    check = compare(load_spec(args.hw), result.program, result.outputs, expected, source)
    verdict = "n/a " if check["ok"] is None else "ok  " if check["ok"] else "FAIL"
    print(f"verify {verdict} max |error| {check['max_abs_error']:.3g} vs {check['reference']} "
          f"({check['criterion']})")
    if "S8S8" in check["reference"]:
        gap = float_path_gap(resolve(args.model), used, result.outputs)
        print(f"       max |error| {gap:.3g} vs onnxruntime's own run of the QDQ model (float path on x86; "
              "not a pass/fail criterion)")
    return 1 if check["ok"] is False else 0


def cmd_compile(args) -> None:
    from compiler.pipeline import compile_graph
    from compiler.targets import lower
    from dse.api import load_spec
    from dse.zoo import resolve
    spec = load_spec(args.hw)
    dump, steps = (Path(args.dump_ir) if args.dump_ir else None), []

    def write_step(name, graph):
        dump.mkdir(parents=True, exist_ok=True)
        (dump / f"{len(steps):02d}_{name}.txt").write_text(str(graph))
        steps.append(name)

    graph = compile_graph(resolve(args.model), after_pass=write_step if dump else None)
    program = lower(graph, spec)
    if args.mapping:
        from compiler.mapping import table
        print(table(program.layers))
    else:
        print(program)


def cmd_models(args) -> None:
    from compiler.pipeline import compile_graph
    from dse import zoo
    print(f"{'name':<18}{'MACs':>16}{'parameters':>14}")
    for name in zoo.NAMES:
        graph = compile_graph(zoo.resolve(f"zoo:{name}"))
        print(f"zoo:{name:<14}{graph.macs():>16,d}{graph.parameter_count():>14,d}")


def cmd_sweep(args) -> int:
    from dse.store import STORE_FILE
    from dse.sweeper import sweep
    if args.resume and args.out and not (Path(args.out) / STORE_FILE).exists():
        print(f"--resume: no store in {args.out} yet; starting the sweep", file=sys.stderr)
    result = sweep(args.spec, out=args.out, strategy=args.strategy, budget=args.budget, seed=args.seed,
                   workers=args.workers, scheduler=args.scheduler, verify=args.verify, force=args.force)
    if result.interrupted:
        return 130
    return 1 if any(check["ok"] is False for check in result.verified) else 0


def cmd_pareto(args) -> None:
    from dse.sweeper import pareto_table
    print(pareto_table(args.folder, args.objectives))


def cmd_report(args) -> None:
    from dse.report_rebuild import rebuild
    if args.compare or len(args.folder) > 1 or args.out:
        return _compare(args)
    done = rebuild(args.folder[0])
    print(f"wrote {done.path} ({done.page_bytes / 1e6:.1f} MB, {done.seconds:.1f} s): {done.points} design points, "
          f"{done.front} on the front (each re-run in timing mode for its drill-down: {done.drilldown_s:.1f} s)")
    if done.missing:
        print(f"note: {done.missing} evaluations of this study are not in the store; the report shows the points "
              "that finished (run the same dse sweep command to finish it)")
    if args.open:
        import webbrowser
        webbrowser.open(done.path.resolve().as_uri())


def _compare(args) -> None:
    """`dse report A B ... --compare --out DIR`."""
    from dse.report_compare import compare
    if not args.compare:
        raise SpecError("dse report: several folders (or --out) need --compare, which writes one page across them")
    if not args.out:
        raise SpecError("--compare: name the folder for the comparison with --out DIR")
    done = compare(args.folder, args.out)
    print(f"wrote {done.path} ({done.page_bytes / 1e6:.1f} MB, {done.seconds:.1f} s): {done.studies} studies, "
          f"{done.points} design points, {done.front} on the joint front of latency, energy and area")
    if args.open:
        import webbrowser
        webbrowser.open(done.path.resolve().as_uri())


def cmd_reprice(args) -> None:
    from dse.repricer import reprice
    reprice(args.folder, args.technology, out=args.out, force=args.force)


def cmd_export(args) -> None:
    from dse.sweeper import load
    df = load(args.folder)
    out = Path(args.out) if args.out else Path(args.folder) / f"evaluations.{args.format}"
    if args.format == "parquet":
        try:
            df.to_parquet(out, index=False)
        except ImportError:
            raise SpecError("Parquet export needs pyarrow: pip install 'accel-dse[parquet]'") from None
    else:
        df.to_csv(out, index=False)
    print(f"wrote {out} ({len(df)} evaluations)")


def cmd_quantize(args) -> None:
    from dse import quantize
    options = {"format": args.format, "per_channel": args.per_channel, "activation_type": args.activation_type,
               "weight_type": args.weight_type}
    out = quantize.quantize(args.model, args.out, calibration_samples=args.calibration_samples,
                            calibration_data=args.calibration_data, seed=args.seed, **options)
    calibration = quantize.calibration_description(args.calibration_samples, args.calibration_data, args.seed)
    print(quantize.summary(args.model, out, calibration=calibration, **options))


def cmd_probe_cpu(args) -> None:
    from dse.probe_cpu import probe, to_yaml
    text = to_yaml(probe())
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {"run": cmd_run, "compile": cmd_compile, "models": cmd_models, "sweep": cmd_sweep,
                    "pareto": cmd_pareto, "report": cmd_report, "export": cmd_export, "quantize": cmd_quantize,
                    "reprice": cmd_reprice, "probe-cpu": cmd_probe_cpu}
        return commands[args.command](args) or 0
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
