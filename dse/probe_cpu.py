"""`dse probe-cpu`: a CPU spec (compiler/targets/cpu/spec.py) for the machine it runs on, so the CPU
model can be checked where it runs (benchmarks/validate_cpu.py).

In: this machine: /proc/cpuinfo (vendor, family, model, ISA flags), the kernel's cache description
(/sys/devices/system/cpu/cpu0/cache, what lscpu prints), and a few seconds of probes: the clock from a
chain of dependent one-cycle integer ops, load latencies from pointer chases (L2, L3, DRAM), the L3
capacity this process actually gets from streams over growing footprints (a VM's share is often less
than the die's), DRAM bandwidth from NumPy copies on one thread and on every core.
Out: the spec as YAML text, each figure's source in a comment (probe(), to_yaml()).

What the kernel does not report — FMA pipes and their width, FMA latency, load/store ports, L2/L3 port
bandwidths — comes from MICROARCHITECTURES by CPUID family and model (the published figures of each
core, cited in hwspecs/cpu_zen4_like.yaml for Zen 4), or GENERIC where the core is not listed.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CPUINFO = Path("/proc/cpuinfo")
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
ZEN4_MODELS = (range(0x10, 0x20), range(0x60, 0x80), range(0xA0, 0xB0))   # family 19h: Genoa, Raphael, Phoenix, ...
CHAIN_OPS = 4                 # dependent one-cycle ops per iteration of _chain (sar, add, sar, add)


@dataclass(frozen=True)
class CoreFigures:
    """What the kernel does not report about a core (spec fields of the same names)."""
    fma_units: int
    fma_unit_bits: int
    fma_latency_cycles: int
    load_units: int
    load_bytes_per_cycle: int
    store_bytes_per_cycle: int
    l1_latency_cycles: int
    l2_bytes_per_cycle: int
    l3_bytes_per_cycle: int


# By core, from the vendors' optimisation guides (hwspecs/cpu_zen4_like.yaml cites Zen 4's; Zen 3 has the
# same FP and load/store pipes without AVX-512; Zen 5 widens the FMA pipes and loads to 512 bits (A. Yee,
# "Zen5's AVX512 Teardown", numberworld.org, 2024); Intel's AVX-512 server cores have two 512-bit FMA ports
# and two 512-bit loads per cycle (Intel 64 and IA-32 Architectures Optimization Reference Manual, Skylake
# server chapter); the L2/L3 port figures of the last two are as recalled, not re-read.
MICROARCHITECTURES = {
    "zen3": CoreFigures(2, 256, 4, 2, 64, 32, 4, 32, 32),
    "zen4": CoreFigures(2, 256, 4, 2, 64, 32, 4, 32, 32),
    "zen5": CoreFigures(2, 512, 4, 2, 128, 64, 4, 64, 32),
    "intel_avx512": CoreFigures(2, 512, 4, 2, 128, 64, 5, 64, 32),
}
GENERIC = CoreFigures(2, 256, 4, 2, 64, 32, 5, 32, 16)      # a guess for a core not listed: an AVX2 core


@dataclass(frozen=True)
class CacheLevel:
    kib: float
    ways: int
    line_bytes: int
    shared_cpus: int          # logical CPUs sharing it


def cpuinfo(text: str | None = None) -> dict:
    """The first processor's fields of /proc/cpuinfo (flags as a set)."""
    text = CPUINFO.read_text() if text is None else text
    info = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    info["flags"] = set(info.get("flags", "").split())
    return info


def microarchitecture(info: dict) -> str | None:
    """The MICROARCHITECTURES key of this core, from its CPUID vendor, family and model; None if not listed."""
    vendor, family, model = info.get("vendor_id"), int(info.get("cpu family", 0)), int(info.get("model", 0))
    if vendor == "AuthenticAMD" and family == 0x19:
        return "zen4" if any(model in r for r in ZEN4_MODELS) else "zen3"
    if vendor == "AuthenticAMD" and family == 0x1A:
        return "zen5"
    if vendor == "GenuineIntel" and "avx512f" in info["flags"]:
        return "intel_avx512"
    return None


def _size_kib(text: str) -> float:
    units = {"K": 1, "M": 1024, "G": 1024 * 1024}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text) / 1024


def _cpu_count(cpu_list: str) -> int:
    count = 0
    for part in cpu_list.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def caches(root: Path = CACHE_DIR) -> dict:
    """{"l1d", "l2", "l3"} -> CacheLevel, from the kernel's cache description of cpu0."""
    out = {}
    for index in sorted(root.glob("index*")):
        read = {name: (index / name).read_text().strip() for name in
                ("type", "level", "size", "ways_of_associativity", "coherency_line_size", "shared_cpu_list")}
        name = {"1": "l1d", "2": "l2", "3": "l3"}.get(read["level"])
        if name and read["type"] != "Instruction":
            out[name] = CacheLevel(_size_kib(read["size"]), int(read["ways_of_associativity"]),
                                   int(read["coherency_line_size"]), _cpu_count(read["shared_cpu_list"]))
    return out


def _chain(n: int, x: int) -> int:
    for _ in range(n):
        x = x + (x >> 63)
        x = x + (x >> 63)
    return x


def _chase(nxt, steps: int) -> int:
    j = 0
    for _ in range(steps):
        j = nxt[j]
    return j


def _compiled():
    from numba import njit     # the probe's kernels only: importing this module stays light
    return njit(cache=True, nogil=True)(_chain), njit(cache=True, boundscheck=False)(_chase)


def clock_ghz(iterations: int = 5_000_000, repeats: int = 40) -> float:
    """Cycles per second from a chain of CHAIN_OPS dependent shifts and adds per iteration (one cycle
    each on every x86 core since the P6): the best of many short runs (~5 ms each), so that one of them
    runs alone on its core when other processes share it."""
    chain, _ = _compiled()
    chain(10, 12345)
    best = min(_timed(chain, iterations, 12345) for _ in range(repeats))
    return CHAIN_OPS * iterations / best / 1e9


def parallel_speedup(threads: int, iterations: int = 20_000_000) -> float:
    """The chain's rate on `threads` threads at once over one thread's (the cores this process really gets:
    less than `threads` when other processes share them)."""
    chain, _ = _compiled()
    chain(10, 12345)
    one = min(_timed(chain, iterations, 12345) for _ in range(3))
    workers = [threading.Thread(target=chain, args=(iterations, 12345)) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * one / (time.perf_counter() - start)


def _timed(f, *args, threads: int = 1) -> float:
    """Seconds of f(*args): the lesser of its wall time and this process's CPU time per thread (a time slice
    another process takes is not counted)."""
    wall, cpu = time.perf_counter(), time.process_time()
    f(*args)
    return min(time.perf_counter() - wall, (time.process_time() - cpu) / threads)


def latency_ns(nbytes: int, steps: int = 100_000, seed: int = 0, repeats: int = 10) -> float:
    """ns per load of a pointer chase through one random cycle over the 64-byte lines of `nbytes`, best
    of `repeats` short chases (another process sharing the caches evicts the buffer less in a short one)."""
    _, chase = _compiled()
    lines = max(nbytes // 64, 2)
    order = np.random.default_rng(seed).permutation(lines)
    nxt = np.zeros(lines * 8, np.int64)
    nxt[order * 8] = np.roll(order, -1) * 8
    chase(nxt, min(steps, lines))
    return min(_timed(chase, nxt, steps) for _ in range(repeats)) / steps * 1e9


def copy_gbps(threads: int, nbytes: int = 256 * 2 ** 20, repeats: int = 3) -> float:
    """DRAM bandwidth, reads plus writes, of NumPy copies split over `threads` threads (NumPy releases
    the GIL while it copies), best of `repeats`."""
    src = np.ones(nbytes // 8)
    dst = np.zeros_like(src)
    bounds = np.linspace(0, len(src), threads + 1).astype(int)

    def run():
        workers = [threading.Thread(target=np.copyto, args=(dst[lo:hi], src[lo:hi]))
                   for lo, hi in itertools.pairwise(bounds)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    run()
    return 2 * nbytes / min(_timed(run, threads=threads) for _ in range(repeats)) / 1e9


def stream_gbps(footprint: int, repeats: int = 5) -> float:
    """Bandwidth, reads plus writes, of y = 1.0 x streamed over a `footprint` of x and y (one thread), best
    of `repeats`: L2's or L3's where the footprint fits in it, DRAM's where it does not."""
    x = np.ones(max(footprint // 8, 1024), np.float32)
    y = np.empty_like(x)
    np.multiply(x, 1.0, out=y)
    passes = max(1, (64 * 2 ** 20) // footprint)            # ~64 MiB per timing
    seconds = min(_timed(lambda: [np.multiply(x, 1.0, out=y) for _ in range(passes)]) for _ in range(repeats))
    return 2 * x.nbytes * passes / seconds / 1e9


def effective_l3_mib(levels: dict, l3_gbps: float, dram_gbps: float) -> float:
    """The largest streamed footprint (doubling from 2 x L2 up to twice the reported L3) still nearer the L3
    bandwidth than DRAM's: the L3 this process gets (other tenants of a VM's host share the rest)."""
    size, best = levels["l2"].kib * 2048, levels["l2"].kib * 2048
    while size <= levels["l3"].kib * 2048:
        if stream_gbps(int(size), repeats=3) < (l3_gbps + dram_gbps) / 2:
            break
        best, size = size, size * 2
    return best / 2 ** 20


@dataclass(frozen=True)
class Measurements:
    ghz: float
    latency_ns: dict          # level -> ns of a chase (l1 the loop's baseline)
    l2_gbps: float            # one thread streaming over L2 / 2, over 2 and 4 x L2 (the better)
    l3_gbps: float
    one_gbps: float           # DRAM copies on one thread, on every core
    every_gbps: float
    l3_mib: float             # the L3 this process gets


def measure(levels: dict, cores: int) -> Measurements:
    """The probes (a few seconds)."""
    l2, l3 = levels["l2"].kib * 1024, levels["l3"].kib * 1024
    latency = {"l1": latency_ns(int(levels["l1d"].kib * 512)), "l2": latency_ns(int(l2 // 2)),
               "l3": latency_ns(int(l2 * 2)), "dram": latency_ns(int(max(l3 * 8, 2 ** 28)), repeats=3)}
    l2_gbps, l3_gbps = stream_gbps(int(l2 // 2)), max(stream_gbps(int(l2 * 2)), stream_gbps(int(l2 * 4)))
    one = copy_gbps(1)
    every = max(one, copy_gbps(cores))      # a noisy neighbour can slow one run; more threads never need less
    return Measurements(clock_ghz(), latency, l2_gbps, l3_gbps, one, every, effective_l3_mib(levels, l3_gbps, one))


def probe() -> dict:
    """The measured and looked-up figures of this machine, with their sources: {path: (value, source)}."""
    info, levels = cpuinfo(), caches()
    uarch = microarchitecture(info)
    logical = len(os.sched_getaffinity(0))
    threads_per_core = max(1, logical // max(1, _physical_cores()))
    cores = max(1, logical // threads_per_core)
    return {"name": ("probed_cpu", info.get("model name", "this machine")),
            **figures(info, levels, MICROARCHITECTURES.get(uarch, GENERIC), uarch, measure(levels, cores), cores,
                      threads_per_core)}


def figures(info: dict, levels: dict, core: CoreFigures, uarch: str | None, m: Measurements, cores: int,
            threads_per_core: int) -> dict:
    """{spec field path: (value, its source)} from what was read, looked up and measured."""
    flags, ghz, ns = info["flags"], m.ghz, m.latency_ns
    table = f"{uarch} figures (dse/probe_cpu.py MICROARCHITECTURES)" if uarch else "a guess (core not listed)"
    measured = "measured by dse probe-cpu"
    simd = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    line = levels["l2"].line_bytes
    dram_ns = ns["dram"] - ns["l1"]

    def cycles(level: str) -> int:
        return max(0, round((ns[level] - ns["l1"]) * ghz + core.l1_latency_cycles))

    looked_up = ("fma_units", "fma_unit_bits", "fma_latency_cycles", "load_units", "load_bytes_per_cycle",
                 "store_bytes_per_cycle")
    return {
        "clock_ghz": (round(ghz, 3), (f"{measured}: {CHAIN_OPS} dependent 1-cycle ops per iteration "
                                     f"(/proc/cpuinfo says {info.get('cpu MHz', '?')} MHz)")),
        "cores": (cores, f"the logical CPUs this process may use, {threads_per_core} per core"),
        "core.simd_bits": (simd, "/proc/cpuinfo flags: avx512f -> 512, avx2 -> 256"),
        "core.vector_registers": (32 if simd == 512 else 16, "AVX-512: 32 zmm; AVX2: 16 ymm"),
        **{f"core.{name}": (getattr(core, name), table) for name in looked_up},
        "core.bf16_dot_product": ("avx512_bf16" in flags, "/proc/cpuinfo flag avx512_bf16"),
        "core.int8_dot_product": (bool({"avx512_vnni", "avx_vnni"} & flags), "/proc/cpuinfo flag avx512_vnni, avx_vnni"),
        "cache.line_bytes": (line, "sysfs coherency_line_size"),
        "cache.l1d_kib": (levels["l1d"].kib, "sysfs (lscpu): cpu0 L1d"),
        "cache.l1d_ways": (levels["l1d"].ways, "sysfs ways_of_associativity"),
        "cache.l1_latency_cycles": (core.l1_latency_cycles, f"{table}; the chases' baseline"),
        "cache.l2_kib": (levels["l2"].kib, "sysfs (lscpu): cpu0 L2"),
        "cache.l2_ways": (levels["l2"].ways, "sysfs ways_of_associativity"),
        "cache.l2_bytes_per_cycle": (core.l2_bytes_per_cycle, (f"{table}; NumPy's y = 1.0 x over L2 / 2 streams "
                                                              f"{m.l2_gbps / ghz:.1f} (its loop's bound)")),
        "cache.l2_latency_cycles": (cycles("l2"), f"{measured}: chase over L2 / 2, {ns['l2']:.1f} ns"),
        "cache.l2_outstanding_misses": (max(1, round(m.one_gbps * dram_ns / line)),
                                        f"Little's law: one core's {m.one_gbps:.1f} GB/s x {dram_ns:.0f} ns / {line} B"),
        "cache.l3_mib": (round(m.l3_mib, 3), (f"{measured}: the streamed footprint where bandwidth falls toward "
                                             f"DRAM's (sysfs reports {levels['l3'].kib / 1024:g} MiB)")),
        "cache.l3_ways": (levels["l3"].ways, "sysfs ways_of_associativity"),
        "cache.cores_per_l3": (max(1, min(cores, levels["l3"].shared_cpus // threads_per_core)),
                               "sysfs shared_cpu_list of the L3, within this process's cores"),
        "cache.l3_bytes_per_cycle": (round(m.l3_gbps / ghz, 1), (f"{measured}: y = 1.0 x streamed over 2 and 4 x L2, "
                                                                 f"reads + writes, {m.l3_gbps:.0f} GB/s ({table}: "
                                                                 f"{core.l3_bytes_per_cycle})")),
        "cache.l3_latency_cycles": (cycles("l3"), f"{measured}: chase over 2 x L2, {ns['l3']:.1f} ns"),
        "memory.dram_channels": (1, "unknown without root (dmidecode): the measured bandwidth as one channel"),
        "memory.dram_channel_gbps": (round(m.every_gbps, 2), (f"{measured}: NumPy copies on {cores} threads, reads + "
                                                             f"writes (one thread: {m.one_gbps:.1f} GB/s)")),
        "memory.dram_latency_ns": (round(dram_ns, 1), f"{measured}: chase over 8 x L3, TLB misses included"),
    }


def _physical_cores() -> int:
    """Distinct (physical id, core id) pairs among the CPUs this process may use."""
    pairs = set()
    allowed = os.sched_getaffinity(0)
    for block in CPUINFO.read_text().split("\n\n"):
        current = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines())}
        if current.get("processor", "").isdigit() and int(current["processor"]) in allowed:
            pairs.add((current.get("physical id"), current.get("core id", current["processor"])))
    return len(pairs) or len(allowed)


def to_yaml(figures: dict) -> str:
    """A CPU spec file: the probed figures by section, each with its source, fp32, ResNet-50 as workload."""
    lines = [f"# A CPU spec of this machine ({figures['name'][1]}), written by `dse probe-cpu`.",
             "# Every figure names where it came from; the CPU target's model is compiler/targets/cpu/.",
             "name: probed_cpu", "target: cpu", "technology: 7nm"]
    sections: dict = {}
    for path, (value, source) in figures.items():
        if path == "name":
            continue
        head, _, field = path.rpartition(".")
        sections.setdefault(head, []).append((field, value, source))
    for head, entries in sections.items():
        if head:
            lines.append(f"{head}:")
        for field, value, source in entries:
            text = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
            lines.append(f"{'  ' if head else ''}{field}: {text}    # {source}")
    lines += ["datatypes: {input: fp32, weight: fp32, accumulator: fp32, output: fp32}",
              "workloads: [zoo:resnet50]"]
    return "\n".join(lines) + "\n"
