"""The SIMT (GPU-like) target's Spec: the YAML schema of a SIMT spec (streaming multiprocessors with
warps, registers, shared memory, SIMT lanes and tensor cores; an L2 shared by all SMs; HBM; a kernel
launch overhead; the bounds of the block-tile search). Fields are declared once with
compiler.spec.spec_field; loading is generic (compiler/spec.py), and `validate` adds the checks
across fields. The defaults describe an NVIDIA A100 SXM4 40 GB in fp16 (hwspecs/gpu_a100_like.yaml
cites every figure)."""
from __future__ import annotations

from dataclasses import dataclass, field

from compiler.errors import SpecError
from compiler.spec import (DATATYPE_BITS, DRAM_TYPES, INTEGER_TYPES, DatatypeSpec, check_datatypes,
                           check_technology, spec_field)
from compiler.targets.simt.cost import fitting_tiles, k_step

# Tensor-core generation -> the operand types its MMA instructions take (A and B of one type).
# Volta: FP16 (V100 whitepaper, 2017); Turing adds INT8/INT4 (Turing whitepaper, 2018); Ampere
# adds BF16 and TF32 (A100 whitepaper, 2020, "A100 Tensor Cores Support All DL Data Types");
# Hopper adds FP8 (H100 whitepaper, 2022), which is no datatype of this version.
TENSOR_CORE_TYPES = {
    "none": (),
    "volta": ("fp16",),
    "turing": ("fp16", "int8"),
    "ampere": ("fp16", "bf16", "tf32", "int8"),
    "hopper": ("fp16", "bf16", "tf32", "int8"),
}
# A spec datatype -> the tensor-core operand type that runs it: fp32 operands run as TF32 (rounded
# to a 10-bit mantissa, A100 whitepaper); uint8 codes as int8 MMAs (the u8 forms of PTX mma).
TENSOR_CORE_TYPE_OF = {"fp16": "fp16", "bf16": "bf16", "fp32": "tf32", "int8": "int8", "uint8": "int8"}


@dataclass(frozen=True)
class SmSpec:
    # At most 4096 SMs: 31x the H100 SXM5's 132; beyond that a value is a typo, not a GPU.
    count: int = spec_field(108, "streaming multiprocessors (SMs)", minimum=1, maximum=4096)
    partitions: int = spec_field(4, "processing blocks per SM, each with its own warp scheduler and a "
                                    "quarter-share of the lanes and tensor cores", minimum=1)
    threads_per_warp: int = spec_field(32, "threads per warp (the SIMT width)", minimum=1, maximum=1024)
    max_warps: int = spec_field(64, "resident warps per SM", minimum=1)
    max_threads: int = spec_field(2048, "resident threads per SM", minimum=1)
    max_blocks: int = spec_field(32, "resident thread blocks per SM", minimum=1)
    max_threads_per_block: int = spec_field(1024, "threads per thread block", minimum=1)
    registers: int = spec_field(65536, "32-bit registers per SM", minimum=1)
    max_registers_per_thread: int = spec_field(255, "32-bit registers one thread may use", minimum=1)
    register_allocation_unit: int = spec_field(256, "registers are allocated per warp in multiples of this",
                                               minimum=1)
    shared_memory_kib: float = spec_field(164, "shared memory per SM: the carve-out of the L1/shared array "
                                               "(KiB)", minimum=0.001, maximum=1048576)
    max_shared_memory_per_block_kib: float = spec_field(163, "shared memory one thread block may use (KiB)",
                                                        minimum=0.001, maximum=1048576)
    reserved_shared_memory_per_block_kib: float = spec_field(1, "shared memory the system reserves per "
                                                                "resident block (KiB)", minimum=0)
    shared_memory_bytes_per_cycle: int = spec_field(128, "shared-memory bandwidth per SM (bytes/cycle: "
                                                         "32 banks x 4 bytes)", minimum=1)
    fp32_lanes: int = spec_field(64, "FP32 FMA lanes per SM (one MAC per lane per cycle)", minimum=1)
    int32_lanes: int = spec_field(64, "INT32 lanes per SM (one multiply-add per lane per cycle)", minimum=1)


@dataclass(frozen=True)
class TensorCoreSpec:
    generation: str = spec_field("ampere", "tensor-core generation: which operand types the MMAs take "
                                           "(none = GEMMs on the SIMT lanes)", choices=tuple(TENSOR_CORE_TYPES))
    mma_m: int = spec_field(16, "M of one MMA instruction for 16-bit operands (rows of A)", minimum=1)
    mma_n: int = spec_field(8, "N of one MMA instruction (columns of B; its granularity where N varies)",
                            minimum=1)
    mma_k: int = spec_field(16, "K of one MMA instruction for 16-bit operands", minimum=1)
    warps_per_mma: int = spec_field(1, "warps that issue one MMA together (1: mma.sync; 4: a Hopper "
                                       "warpgroup's wgmma)", minimum=1)
    fp16_macs_per_sm_cycle: int = spec_field(1024, "dense fp16 MACs per SM per cycle (fp32 accumulate)",
                                             minimum=0)
    bf16_macs_per_sm_cycle: int = spec_field(1024, "dense bf16 MACs per SM per cycle (fp32 accumulate)",
                                             minimum=0)
    tf32_macs_per_sm_cycle: int = spec_field(0, "dense TF32 MACs per SM per cycle, used for fp32 GEMMs when "
                                                "> 0; 0 = fp32 GEMMs on the FP32 lanes (the simulator computes "
                                                "exact fp32, so > 0 times TF32 for fp32 results)", minimum=0)
    int8_macs_per_sm_cycle: int = spec_field(2048, "dense int8 MACs per SM per cycle (int32 accumulate)",
                                             minimum=0)


@dataclass(frozen=True)
class MemorySpec:
    l1_kib: float = spec_field(192, "combined L1 data cache and shared memory per SM (KiB)", minimum=0.001,
                               maximum=1048576)
    # At most 1 TiB of L2: far above any GPU's (H100: 50 MB); a larger value is a typo.
    l2_mib: float = spec_field(40, "L2 cache shared by all SMs (MiB)", minimum=0.001, maximum=1048576)
    l2_bytes_per_cycle: float = spec_field(5120, "L2 read bandwidth, all SMs together (bytes/cycle)",
                                           minimum=0.001)
    l2_latency_cycles: int = spec_field(262, "load latency of an L2 hit (cycles)", minimum=0)
    dram_gbps: float = spec_field(1555, "HBM/DRAM bandwidth (GB/s)", minimum=0.001)
    dram_latency_cycles: int = spec_field(466, "load latency of an L2 miss served by DRAM (cycles)", minimum=0)
    dram_type: str = spec_field("hbm2", "DRAM family, priced per byte by the technology table",
                                choices=DRAM_TYPES)


@dataclass(frozen=True)
class TileSpec:
    """Bounds of the block-tile search (compiler/targets/simt/cost.py choose_tile): each dimension
    takes min, 2 min, 4 min, ... up to max."""
    min_block_m: int = spec_field(64, "smallest block-tile M (output rows per thread block)", minimum=1)
    max_block_m: int = spec_field(256, "largest block-tile M", minimum=1)
    min_block_n: int = spec_field(64, "smallest block-tile N (output columns per thread block)", minimum=1)
    max_block_n: int = spec_field(256, "largest block-tile N", minimum=1)
    min_block_k: int = spec_field(32, "smallest K step staged through shared memory, in 16-bit elements (the "
                                      "step's bytes stay the same: 4-byte operands take half as many elements, "
                                      "8-bit ones twice as many, as mma shapes do)", minimum=1)
    max_block_k: int = spec_field(64, "largest K step, in 16-bit elements (as min_block_k)", minimum=1)
    min_warps: int = spec_field(4, "fewest warps per thread block", minimum=1)
    max_warps: int = spec_field(8, "most warps per thread block", minimum=1)
    stages: int = spec_field(2, "A and B tiles buffered in shared memory per block (2 = double buffering)",
                             minimum=1, maximum=16)
    # At most 16: the largest (non-portable) thread-block cluster of compute capability 9.0 (CUDA guide).
    multicast_blocks: int = spec_field(1, "blocks of a thread-block cluster that receive each shared A or B "
                                          "tile from one L2 read (Hopper TMA multicast; 1 = no clusters)",
                                       minimum=1, maximum=16)


def _fp16() -> DatatypeSpec:
    return DatatypeSpec(input="fp16", weight="fp16", accumulator="fp32", output="fp16")


@dataclass(frozen=True)
class SimtSpec:
    name: str = spec_field("simt", "spec name; reports go to reports/<name>/")
    target: str = spec_field("simt", "which target lowers to this hardware", choices=("simt",))
    clock_ghz: float = spec_field(1.41, "SM clock (GHz); every cycle figure counts these cycles", minimum=0.001)
    technology: str = spec_field("7nm", "energy/area table: hwspecs/tech/<name>.yaml, or a path to a .yaml "
                                        "table", check=check_technology)
    launch_overhead_us: float = spec_field(1.0, "time each kernel launch adds in stream order (us)", minimum=0)
    sm: SmSpec = field(default_factory=SmSpec, metadata={"doc": "one streaming multiprocessor"})
    tensor_core: TensorCoreSpec = field(default_factory=TensorCoreSpec,
                                        metadata={"doc": "the tensor cores of one SM"})
    memory: MemorySpec = field(default_factory=MemorySpec, metadata={"doc": "L1, L2 and DRAM"})
    tiles: TileSpec = field(default_factory=TileSpec, metadata={"doc": "block-tile search bounds"})
    datatypes: DatatypeSpec = field(default_factory=_fp16, metadata={"doc": "datapath types"})
    workloads: tuple = spec_field(("zoo:resnet50",), "models the explorer evaluates: zoo:NAME, a .onnx path, "
                                  "or {model, batch, weight, quantize} (checked by dse.workloads)")
    sweep: dict = spec_field(None, "explorer grid: field path -> list of values (see dse)")

    FIGURE_FIELDS = ("sm.count",)   # the fields `figures` is computed from
    FIGURES = {"sm_count": ("SMs", "min", "streaming multiprocessors: sm.count")}   # unit, better, definition

    @property
    def integer_datapath(self) -> bool:
        """True for the int8 datapath (8-bit codes in, int32 accumulate, requantised 8-bit out)."""
        return self.datatypes.input in INTEGER_TYPES

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.memory.dram_gbps / self.clock_ghz

    @property
    def launch_overhead_cycles(self) -> float:
        return self.launch_overhead_us * 1e3 * self.clock_ghz

    def macs_per_sm_cycle(self, datatype: str) -> tuple:
        """(MACs one SM completes per cycle on GEMMs of `datatype`, "tensor_core" or "simt"): the
        tensor cores' rate where they run the type, else one MAC per FP32 (float) or INT32 (integer)
        lane per cycle (packed HFMA2 and DP4A are not modelled)."""
        rate = getattr(self.tensor_core, f"{TENSOR_CORE_TYPE_OF[datatype]}_macs_per_sm_cycle")
        if self.tensor_core.generation != "none" and rate > 0:
            return rate, "tensor_core"
        return (self.sm.int32_lanes if datatype in INTEGER_TYPES else self.sm.fp32_lanes), "simt"

    @property
    def peak_macs_per_cycle(self) -> int:
        """MACs all SMs complete per cycle on GEMMs of the spec's input datatype."""
        return self.sm.count * self.macs_per_sm_cycle(self.datatypes.input)[0]

    @property
    def figures(self) -> dict:
        """Design figures the explorer tabulates per point."""
        return {"sm_count": self.sm.count}

    def validate(self, where: str) -> None:
        check_datatypes(self.datatypes, where)
        self._check_tensor_cores(where)
        self._check_memories(where)
        self._check_tiles(where)

    def _check_tensor_cores(self, where: str) -> None:
        tc = self.tensor_core
        takes = TENSOR_CORE_TYPES[tc.generation]
        for kind in ("fp16", "bf16", "tf32", "int8"):
            rate = getattr(tc, f"{kind}_macs_per_sm_cycle")
            if rate and kind not in takes:
                raise SpecError(f"{where}: field 'tensor_core.{kind}_macs_per_sm_cycle' is {rate}; "
                                f"{tc.generation} tensor cores take {', '.join(takes) or 'no operands'}, "
                                f"not {kind}: set it to 0 or choose another tensor_core.generation")
        dt = self.datatypes
        kind = TENSOR_CORE_TYPE_OF[dt.input]
        if tc.generation == "none" or kind == "tf32":      # the SIMT lanes run it (fp32: TF32 or lanes)
            return
        if getattr(tc, f"{kind}_macs_per_sm_cycle") == 0:
            raise SpecError(f"{where}: field 'datatypes.input' is {dt.input!r}, but "
                            f"tensor_core.{kind}_macs_per_sm_cycle is 0: these tensor cores do not run "
                            f"{kind}; give its rate, or an input type whose rate is not 0")
        if TENSOR_CORE_TYPE_OF.get(dt.weight) != kind:
            raise SpecError(f"{where}: field 'datatypes.weight' is {dt.weight!r}; a tensor-core MMA takes "
                            f"two operands of one type: with {dt.input} input use {dt.input}")

    def _check_memories(self, where: str) -> None:
        sm, mem = self.sm, self.memory
        if sm.shared_memory_kib > mem.l1_kib:
            raise SpecError(f"{where}: field 'sm.shared_memory_kib' is {sm.shared_memory_kib:g}; shared "
                            f"memory is carved out of the L1/shared array: must be <= memory.l1_kib "
                            f"({mem.l1_kib:g})")
        if sm.max_threads_per_block > sm.max_threads:
            raise SpecError(f"{where}: field 'sm.max_threads_per_block' is {sm.max_threads_per_block}; must be "
                            f"<= sm.max_threads ({sm.max_threads})")

    def _check_tiles(self, where: str) -> None:
        t = self.tiles
        for dim in ("block_m", "block_n", "block_k", "warps"):
            low, high = getattr(t, f"min_{dim}"), getattr(t, f"max_{dim}")
            if low > high:
                raise SpecError(f"{where}: field 'tiles.max_{dim}' is {high}; must be >= tiles.min_{dim} ({low})")
        elem = DATATYPE_BITS[self.datatypes.input] // 8
        need = t.stages * (t.min_block_m + t.min_block_n) * k_step(t.min_block_k, elem) * elem
        limit = min(self.sm.max_shared_memory_per_block_kib,
                    self.sm.shared_memory_kib - self.sm.reserved_shared_memory_per_block_kib) * 1024
        if need > limit:
            raise SpecError(f"{where}: field 'tiles' (min_block_m {t.min_block_m}, min_block_n {t.min_block_n}, "
                            f"min_block_k {t.min_block_k} (16-bit elements), stages {t.stages}): the smallest block "
                            "tile needs "
                            f"{need / 1024:g} KiB of {self.datatypes.input} A and B tiles in shared memory, but "
                            f"sm.max_shared_memory_per_block_kib and sm.shared_memory_kib leave a block "
                            f"{max(limit, 0) / 1024:g} KiB: lower the tiles' minima or stages, or give more")
        fits, reason = fitting_tiles(self, elem)
        if not fits:
            raise SpecError(f"{where}: field 'tiles' admits no block tile this SM can run: {reason}")
