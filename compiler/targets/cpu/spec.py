"""The CPU target's Spec: the YAML schema of a multicore CPU (cores with SIMD FMA units, vector
registers and load/store ports; private L1 data and L2 caches; an L3 shared by groups of cores; DRAM
channels). Fields are declared once with compiler.spec.spec_field; loading is generic
(compiler/spec.py), and `validate` adds the checks across fields. The defaults describe an AMD EPYC
9654 (96 Zen 4 cores) in fp32; hwspecs/cpu_zen4_like.yaml cites every figure."""
from __future__ import annotations

from dataclasses import dataclass, field

from compiler.errors import SpecError
from compiler.spec import DRAM_TYPES, INTEGER_TYPES, DatatypeSpec, check_datatypes, check_technology, spec_field

ACCUMULATOR_BITS = 32        # fp32 or int32 accumulators: one per 32-bit SIMD lane
WIDTHS = (128, 256, 512)     # SIMD widths of x86 vector ISAs (SSE, AVX2, AVX-512) and of their datapaths


def _width(value: int) -> str | None:
    """A `check` for a SIMD width (spec_field's `choices` are text)."""
    return None if value in WIDTHS else f"allowed: {', '.join(map(str, WIDTHS))}"


@dataclass(frozen=True)
class CoreSpec:
    simd_bits: int = spec_field(512, "vector register width of the ISA the kernels use (128 SSE, 256 AVX2, "
                                     "512 AVX-512)", check=_width)
    vector_registers: int = spec_field(32, "architectural vector registers (16 for AVX2, 32 for AVX-512)",
                                       minimum=4, maximum=256)
    fma_units: int = spec_field(2, "SIMD FMA pipes per core", minimum=1, maximum=16)
    fma_unit_bits: int = spec_field(256, "datapath width of one FMA pipe (a wider instruction takes "
                                         "simd_bits / fma_unit_bits issue slots)", check=_width)
    fma_latency_cycles: int = spec_field(4, "cycles from an FMA's issue to its result being usable by the "
                                            "next dependent FMA", minimum=1, maximum=64)
    load_units: int = spec_field(2, "vector loads (or broadcasts) the core issues per cycle", minimum=1,
                                 maximum=16)
    load_bytes_per_cycle: int = spec_field(64, "L1 data-cache load bandwidth per core (bytes/cycle)", minimum=1)
    store_bytes_per_cycle: int = spec_field(32, "L1 data-cache store bandwidth per core (bytes/cycle)", minimum=1)
    bf16_dot_product: bool = spec_field(True, "has a bf16 pair dot product into fp32 lanes (AVX512_BF16 "
                                              "VDPBF16PS): 2 bf16 MACs per 32-bit lane per instruction")
    int8_dot_product: bool = spec_field(True, "has a u8 x s8 four-way dot product into int32 lanes "
                                              "(AVX512_VNNI / AVX-VNNI VPDPBUSD): 4 MACs per lane; without it, "
                                              "int8 runs exactly as sign-extended int16 pairs (VPMADDWD): 2")
    instruction_energy_pj: float = spec_field(4.79, "energy of fetching, decoding, scheduling and retiring one "
                                                    "instruction, beyond its arithmetic (pJ)", minimum=0)


@dataclass(frozen=True)
class CacheSpec:
    line_bytes: int = spec_field(64, "cache line (bytes)", minimum=8, maximum=4096)
    l1d_kib: float = spec_field(32, "L1 data cache per core (KiB)", minimum=0.25, maximum=65536)
    l1d_ways: int = spec_field(8, "L1 data cache associativity", minimum=2, maximum=256)
    l1_latency_cycles: int = spec_field(4, "L1 load-to-use latency (cycles)", minimum=0)
    l2_kib: float = spec_field(1024, "private L2 cache per core (KiB)", minimum=1, maximum=1048576)
    l2_ways: int = spec_field(8, "L2 associativity", minimum=2, maximum=256)
    l2_bytes_per_cycle: float = spec_field(32, "L2 to L1 bandwidth per core (bytes/cycle)", minimum=0.001)
    l2_latency_cycles: int = spec_field(14, "L2 hit load-to-use latency (cycles)", minimum=0)
    l2_outstanding_misses: int = spec_field(64, "L2 misses one core keeps in flight (bounds its L3 and DRAM "
                                                "bandwidth by Little's law: misses x line / latency)", minimum=1)
    l3_mib: float = spec_field(32, "L3 cache of one L3 domain, shared by cores_per_l3 cores (MiB)",
                               minimum=0.001, maximum=1048576)
    l3_ways: int = spec_field(16, "L3 associativity", minimum=2, maximum=1024)
    cores_per_l3: int = spec_field(8, "cores sharing one L3 (a CCX/CCD, or a whole die)", minimum=1, maximum=4096)
    l3_bytes_per_cycle: float = spec_field(32, "L3 to L2 bandwidth per core (bytes/cycle)", minimum=0.001)
    l3_latency_cycles: int = spec_field(50, "L3 hit load-to-use latency (cycles)", minimum=0)


@dataclass(frozen=True)
class MemorySpec:
    dram_channels: int = spec_field(12, "DRAM channels (64-bit DDR channels)", minimum=1, maximum=1024)
    dram_channel_gbps: float = spec_field(38.4, "peak bandwidth of one channel (GB/s): MT/s x 8 bytes",
                                          minimum=0.001)
    dram_latency_ns: float = spec_field(110, "load latency of a DRAM access, core to core (ns)", minimum=0)
    dram_type: str = spec_field("ddr4", "DRAM family, priced per byte by the technology table", choices=DRAM_TYPES)


@dataclass(frozen=True)
class CpuSpec:
    name: str = spec_field("cpu", "spec name; reports go to reports/<name>/")
    target: str = spec_field("cpu", "which target lowers to this hardware", choices=("cpu",))
    clock_ghz: float = spec_field(3.55, "core clock with every core busy (GHz); every cycle figure counts these",
                                  minimum=0.001)
    technology: str = spec_field("7nm", "energy/area table: hwspecs/tech/<name>.yaml, or a path to a .yaml "
                                        "table", check=check_technology)
    cores: int = spec_field(96, "cores the layers are split over (one thread each)", minimum=1, maximum=4096)
    core: CoreSpec = field(default_factory=CoreSpec, metadata={"doc": "one core's SIMD units and ports"})
    cache: CacheSpec = field(default_factory=CacheSpec, metadata={"doc": "L1, L2 and L3"})
    memory: MemorySpec = field(default_factory=MemorySpec, metadata={"doc": "DRAM"})
    datatypes: DatatypeSpec = field(default_factory=DatatypeSpec, metadata={"doc": "datapath types"})
    workloads: tuple = spec_field(("zoo:resnet50",), "models the explorer evaluates: zoo:NAME, a .onnx path, "
                                  "or {model, batch, weight, quantize} (checked by dse.workloads)")
    sweep: dict = spec_field(None, "explorer grid: field path -> list of values (see dse)")

    FIGURE_FIELDS = ("cores",)    # the fields `figures` is computed from
    FIGURES = {"core_count": ("cores", "min", "CPU cores the layers are split over: cores")}

    @property
    def integer_datapath(self) -> bool:
        """True for the int8 datapath (8-bit codes in, int32 accumulate, requantised 8-bit out)."""
        return self.datatypes.input in INTEGER_TYPES

    @property
    def lanes(self) -> int:
        """32-bit accumulator lanes in one vector register."""
        return self.core.simd_bits // ACCUMULATOR_BITS

    @property
    def vector_ops_per_cycle(self) -> float:
        """Full-width SIMD FMA (or ALU) instructions one core issues per cycle: each takes
        simd_bits / fma_unit_bits of the FMA pipes' slots (Zen 4 runs a 512-bit op on two 256-bit halves)."""
        return self.core.fma_units * self.core.fma_unit_bits / self.core.simd_bits

    def k_per_instruction(self, datatype: str) -> int:
        """K elements one SIMD MAC instruction reduces into each 32-bit lane: 4 for int8 with a four-way
        dot product (VPDPBUSD), 2 for int8 as int16 pairs (VPMADDWD) and for bf16 with VDPBF16PS, 1
        otherwise (fp32; fp16, and bf16 without the dot product, widened to fp32 when packed)."""
        if datatype in INTEGER_TYPES:
            return 4 if self.core.int8_dot_product else 2
        return 2 if datatype == "bf16" and self.core.bf16_dot_product else 1

    def macs_per_core_cycle(self, datatype: str) -> float:
        return self.lanes * self.vector_ops_per_cycle * self.k_per_instruction(datatype)

    @property
    def peak_macs_per_cycle(self) -> float:
        """MACs all cores complete per cycle on GEMMs of the spec's input datatype."""
        return self.cores * self.macs_per_core_cycle(self.datatypes.input)

    @property
    def dram_gbps(self) -> float:
        return self.memory.dram_channels * self.memory.dram_channel_gbps

    @property
    def dram_latency_cycles(self) -> float:
        return self.memory.dram_latency_ns * self.clock_ghz

    @property
    def figures(self) -> dict:
        return {"core_count": self.cores}

    def validate(self, where: str) -> None:
        check_datatypes(self.datatypes, where)
        core, cache = self.core, self.cache
        if core.fma_unit_bits > core.simd_bits:
            raise SpecError(f"{where}: field 'core.fma_unit_bits' is {core.fma_unit_bits}; an instruction's "
                            f"operands are core.simd_bits ({core.simd_bits}) wide, so its FMA pipe is no wider: "
                            f"must be <= {core.simd_bits}")
        for level, kib in (("l1d", cache.l1d_kib), ("l2", cache.l2_kib), ("l3", cache.l3_mib * 1024)):
            ways = getattr(cache, f"{level}_ways")
            if kib * 1024 < ways * cache.line_bytes:
                raise SpecError(f"{where}: field 'cache.{level}_ways' is {ways}; {kib:g} KiB holds only "
                                f"{int(kib * 1024 // cache.line_bytes)} lines of {cache.line_bytes} bytes: a cache "
                                "needs at least one set of `ways` lines")
        if cache.l2_kib <= cache.l1d_kib:
            raise SpecError(f"{where}: field 'cache.l2_kib' is {cache.l2_kib:g}; must be > cache.l1d_kib "
                            f"({cache.l1d_kib:g}): the blocking keeps a packed block of A in L2, larger than L1")
        from compiler.targets.cpu.cost import blocking     # the cost model reads this module
        blocking(self, self.datatypes.input, sharers=self.cores, where=where)
