"""The systolic target's Spec: the YAML schema of hwspecs/systolic*.yaml (an R x C PE array with a
dataflow, input/weight scratchpads and an accumulator, a vector unit, DRAM). Fields are declared
with compiler.spec.spec_field (unit in the name, default, bounds, one-line doc); loading and
validation are generic (compiler/spec.py)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from compiler.spec import (DRAM_TYPES, INTEGER_TYPES, DatatypeSpec, check_datatypes, check_technology,
                           spec_field)
from compiler.targets.systolic.cycles import OUTPUT_DRAINS

DATAFLOWS = ("weight_stationary", "output_stationary", "input_stationary")


@dataclass(frozen=True)
class ArraySpec:
    # At most 4096 per side: 16x TPU v1's 256x256 (Jouppi et al., ISCA 2017) each way, 16.8M PEs;
    # beyond that a value is a typo (an extra zero), not a design this area/energy model describes.
    rows: int = spec_field(32, "processing-element rows of the systolic array", minimum=1, maximum=4096)
    cols: int = spec_field(32, "processing-element columns of the systolic array", minimum=1, maximum=4096)
    dataflow: str = spec_field("weight_stationary", "which operand stays in the PEs", choices=DATAFLOWS)
    macs_per_pe_cycle: int = spec_field(1, "MACs each PE completes per cycle in the spec's datatypes: a PE that packs "
                                "narrow multipliers reduces that many consecutive K elements per cycle "
                                "(TPU v1: full rate for 8x8-bit, half with one 16-bit operand, quarter with two)",
                                minimum=1)
    # SCALE-Sim v3 (compute/systolic_compute_os.py) overlaps the shift-out with the next fold's
    # skew; the ISPASS 2020 paper's eq. 2 (Samajdar et al.) charges R more per fold. Default: the
    # simulator peers and sweeps are checked against (docs/timing_model.md).
    output_stationary_drain: str = spec_field(
        "overlapped", "output-stationary folds: 'overlapped' shifts a fold's outputs out under the next fold's "
        "input skew (R + C + T - 2 cycles per fold, SCALE-Sim v3); 'separate' stops the array R cycles to shift "
        "them out (2R + C + T - 2, the ISPASS 2020 paper)", choices=OUTPUT_DRAINS)


@dataclass(frozen=True)
class MemorySpec:
    # At most 1 GiB (1048576 KiB) each: a functional run allocates every on-chip memory in full
    # (sim/run.py memory_buffers), and 1 GiB is above the largest single-die SRAM (Graphcore
    # GC200: 900 MB), so a larger value is a typo that would ask the simulator for gigabytes.
    input_scratchpad_kib: float = spec_field(256, "on-chip buffer for activation tiles (KiB)", minimum=0.001,
                                     maximum=1048576)
    weight_scratchpad_kib: float = spec_field(256, "on-chip buffer for weight tiles (KiB)", minimum=0.001,
                                      maximum=1048576)
    accumulator_kib: float = spec_field(128, "on-chip accumulator for output tiles (KiB)", minimum=0.001,
                                maximum=1048576)
    scratchpad_banks: int = spec_field(4, "banks per scratchpad (parallel ports)", minimum=1)
    scratchpad_bytes_per_cycle: int = spec_field(64, "bytes per cycle per bank", minimum=1)
    dram_gbps: float = spec_field(25.6, "DRAM bandwidth (GB/s; 25.6 = one DDR4-3200 channel)", minimum=0.001)
    dram_latency_cycles: int = spec_field(100, "DRAM access latency per DMA transfer (cycles)", minimum=0)
    dram_type: str = spec_field("ddr4", "DRAM family, priced per byte by the technology table", choices=DRAM_TYPES)
    double_buffer: bool = spec_field(True, "split scratchpads in two so loads overlap compute")
    ideal: bool = spec_field(False, "ideal memory: DMA transfers and DRAM traffic take no cycles, so tiles are "
                                    "chosen and timed for compute alone (the compute-only figure SCALE-Sim "
                                    "reports); energy still counts every byte")


@dataclass(frozen=True)
class VectorSpec:
    lanes: int = spec_field(32, "elements the vector unit processes per cycle", minimum=1)


@dataclass(frozen=True)
class SystolicSpec:
    name: str = spec_field("systolic", "spec name; reports go to reports/<name>/")
    target: str = spec_field("systolic", "which target lowers to this hardware", choices=("systolic",))
    clock_ghz: float = spec_field(1.0, "core clock (GHz)", minimum=0.001)
    technology: str = spec_field("45nm", "energy/area table: hwspecs/tech/<name>.yaml, or a path to a .yaml table",
                         check=check_technology)
    array: ArraySpec = field(default_factory=ArraySpec, metadata={"doc": "the PE array"})
    datatypes: DatatypeSpec = field(default_factory=DatatypeSpec, metadata={"doc": "datapath types"})
    memory: MemorySpec = field(default_factory=MemorySpec, metadata={"doc": "on-chip and DRAM memories"})
    vector: VectorSpec = field(default_factory=VectorSpec, metadata={"doc": "the vector unit"})
    workloads: tuple = spec_field(("zoo:resnet50",), "models the explorer evaluates: zoo:NAME, a .onnx path, or "
                          "{model, batch, weight, quantize} (checked by dse.workloads)")
    sweep: dict = spec_field(None, "explorer grid: field path -> list of values (see dse)")

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.memory.dram_gbps / self.clock_ghz

    @property
    def ideal_memory(self) -> bool:
        """Whether this spec is timed (and tiled) with free data movement (memory.ideal)."""
        return self.memory.ideal

    def with_ideal_memory(self) -> SystolicSpec:
        """This spec with memory.ideal set: what `--ideal-memory` compiles for (tiles chosen for compute)."""
        return replace(self, memory=replace(self.memory, ideal=True))

    @property
    def integer_datapath(self) -> bool:
        """True for the int8 datapath (8-bit codes in, int32 accumulate, requantised 8-bit out)."""
        return self.datatypes.input in INTEGER_TYPES

    @property
    def peak_macs_per_cycle(self) -> int:
        """MACs the whole array completes per cycle at full utilisation."""
        return self.array.rows * self.array.cols * self.array.macs_per_pe_cycle

    @property
    def figures(self) -> dict:
        """Design figures the explorer tabulates per point (dse.space.METRICS defines them)."""
        return {"pe_count": self.array.rows * self.array.cols}

    FIGURE_FIELDS = ("array.rows", "array.cols")   # the fields `figures` is computed from
    FIGURES = {"pe_count": ("PEs", "min", "processing elements: array.rows x array.cols")}   # unit, better, definition

    def validate(self, where: str) -> None:
        check_datatypes(self.datatypes, where)
