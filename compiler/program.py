"""The Program: what a target emits and the simulator runs (contract 2 of DESIGN.md).

A Program holds
  * a memory plan: DRAM regions (byte offset, shape, dtype, kind) for inputs,
    weights, activations and outputs, plus the on-chip memories (bytes) the Spec
    declares;
  * the initial DRAM image (weights placed at their offsets);
  * an instruction table, struct-of-arrays, one row per instruction: engine,
    opcode, layer index, eight int64 operands, DRAM and on-chip bytes moved,
    work (MACs or vector element-ops) and explicit predecessor dependencies (CSR);
  * descriptor tables (int64 and float64 rows) holding per-layer geometry that
    many instructions share (a conv's shape, a pooling window, ...).
Operand meaning per opcode is documented in OPCODES below; sim/reference.py
defines it executably. `Program.verify()` checks the table; `str(program)`
prints one line per instruction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from compiler.errors import CompileError

ENGINES = ("dma_load", "matrix", "vector", "dma_store")
ENGINE_ID = {name: i for i, name in enumerate(ENGINES)}

# opcode -> (engine, operand names). Addresses are bytes; sizes are elements.
OPCODES = {
    "load_im2col": ("dma_load", ("desc", "m0", "tm", "k0", "tk", "dst")),       # conv desc -> input scratchpad [tm,tk]
    "load_weights": ("dma_load", ("src", "tk", "tn", "src_row_elems", "dst")),  # DRAM [tk,tn] rows -> weight scratchpad
    "load_bias": ("dma_load", ("src", "tm", "tn", "dst")),                      # bias[tn] (src<0: zeros) -> accumulator [tm,tn]
    "matmul": ("matrix", ("a", "w", "acc", "tm", "tk", "tn")),                  # acc[tm,tn] += a[tm,tk] @ w[tk,tn]
    "store_tile": ("dma_store", ("desc", "acc", "m0", "tm", "n0", "tn")),       # accumulator -> DRAM (conv desc layout, activation)
    "vec_relu": ("vector", ("desc",)),
    "vec_binary": ("vector", ("desc",)),
    "vec_affine": ("vector", ("desc",)),
    "vec_maxpool": ("vector", ("desc",)),
    "vec_avgpool": ("vector", ("desc",)),
    "vec_lrn": ("vector", ("desc",)),
    "vec_softmax": ("vector", ("desc",)),
    "vec_copy": ("vector", ("desc",)),
}
OPCODE_ID = {name: i for i, name in enumerate(OPCODES)}
OPCODE_NAMES = tuple(OPCODES)
OPCODE_ENGINE = np.array([ENGINE_ID[e] for e, _ in OPCODES.values()], dtype=np.int8)
N_OPERANDS = 8
BYTES = 4  # bytes per element of every region, tile and accumulator (the datapath is fp32)
DESC_INTS = 24
DESC_FLOATS = 4

# Conv/GEMM descriptor fields (int row); GEMM [M,K]x[K,N] uses N=M, C=K, H=W=kh=kw=1.
CONV_FIELDS = ("x", "n", "c", "h", "w", "kh", "kw", "sh", "sw", "pt", "pl", "dh", "dw",
               "oh", "ow", "cin_g", "cin_off", "out", "cout", "cout_off", "activation")
CONV = {name: i for i, name in enumerate(CONV_FIELDS)}
ACTIVATION_ID = {"none": 0, "relu": 1}
BINARY_OPS = {"add": 0, "sub": 1, "mul": 2, "div": 3}
MAX_RANK = 6


@dataclass(frozen=True)
class Region:
    name: str
    offset: int          # bytes from DRAM base
    shape: tuple
    kind: str            # input | weight | activation | output
    dtype: str = "fp32"

    @property
    def nbytes(self) -> int:
        return int(math.prod(self.shape)) * BYTES   # Python ints: regions are placed per design point


@dataclass(frozen=True)
class Layer:
    name: str            # source node name
    op: str              # IR op
    macs: int
    mapping: str = ""    # human-readable mapping (tiles, loop order, dataflow)


@dataclass
class Instructions:
    """Struct-of-arrays instruction table."""
    engine: np.ndarray       # int8
    opcode: np.ndarray       # int16
    layer: np.ndarray        # int32
    operands: np.ndarray     # int64 [n, N_OPERANDS]
    dram_bytes: np.ndarray   # int64: bytes read or written in DRAM
    onchip_bytes: np.ndarray  # int64: bytes written/read in on-chip memories
    work: np.ndarray         # int64: MACs (matrix) or element-ops (vector)
    dep_ptr: np.ndarray      # int64 [n+1]: deps of i are dep_idx[dep_ptr[i]:dep_ptr[i+1]]
    dep_idx: np.ndarray      # int64

    def __len__(self) -> int:
        return len(self.opcode)


@dataclass
class Program:
    target: str
    spec: object
    regions: dict            # name -> Region
    dram_size: int           # bytes
    constants: list          # (byte offset, np.ndarray) placed in DRAM before the run
    onchip: dict             # memory name -> bytes (input_scratchpad, weight_scratchpad, accumulator)
    instructions: Instructions
    desc_int: np.ndarray     # int64 [n_desc, DESC_INTS]
    desc_float: np.ndarray   # float64 [n_desc, DESC_FLOATS]
    layers: list             # Layer per layer index
    inputs: list             # graph input names (regions)
    outputs: list            # graph output names (regions)
    _image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def dram_image(self) -> np.ndarray:
        """A fresh copy of the initial DRAM contents (uint8 [dram_size]). Built on first use
        and kept, so timing-only runs never pay for it and functional runs pay only a copy."""
        if self._image is None:
            self._image = np.zeros(self.dram_size, np.uint8)
            view = self._image.view(np.float32)
            for offset, data in self.constants:
                view[offset // 4: offset // 4 + data.size] = np.asarray(data, np.float32).ravel()
        return self._image.copy()

    def verify(self) -> "Program":
        ins = self.instructions
        n = len(ins)
        where = f"program ({self.target})"
        for name, col in (("engine", ins.engine), ("layer", ins.layer), ("dram_bytes", ins.dram_bytes),
                          ("onchip_bytes", ins.onchip_bytes), ("work", ins.work)):
            if len(col) != n:
                raise CompileError(f"{where}: column {name} has {len(col)} rows, expected {n}")
        if ins.operands.shape != (n, N_OPERANDS) or len(ins.dep_ptr) != n + 1:
            raise CompileError(f"{where}: operand or dependency table has the wrong shape")
        bad = np.nonzero(OPCODE_ENGINE[ins.opcode] != ins.engine)[0]
        if len(bad):
            i = int(bad[0])
            raise CompileError(f"{where}: row {i} {OPCODE_NAMES[ins.opcode[i]]} on wrong engine {ins.engine[i]}")
        rows = np.repeat(np.arange(n), np.diff(ins.dep_ptr))
        bad = np.nonzero((ins.dep_idx >= rows) | (ins.dep_idx < 0))[0]
        if len(bad):
            i = int(rows[bad[0]])
            raise CompileError(f"{where}: row {i} {OPCODE_NAMES[ins.opcode[i]]} depends on a later row")
        for region in self.regions.values():
            if region.offset < 0 or region.offset + region.nbytes > self.dram_size:
                raise CompileError(f"{where}: region {region.name} lies outside DRAM")
        return self

    def describe_row(self, i: int) -> str:
        ins = self.instructions
        op = OPCODE_NAMES[ins.opcode[i]]
        engine, names = OPCODES[op]
        vals = ins.operands[i]
        text = " ".join(f"{nm}={int(v)}" for nm, v in zip(names, vals))
        deps = ins.dep_idx[ins.dep_ptr[i]:ins.dep_ptr[i + 1]]
        layer = self.layers[ins.layer[i]].name
        return (f"{i:6d} {engine:<9} {op:<12} {text:<60} dram_B={int(ins.dram_bytes[i])} "
                f"deps={','.join(str(int(d)) for d in deps) or '-'}  # {layer}")

    def __str__(self) -> str:
        lines = [f"program target={self.target} instructions={len(self.instructions)} "
                 f"dram_bytes={self.dram_size} onchip={self.onchip}"]
        for r in self.regions.values():
            lines.append(f"  region {r.kind:<10} {r.name} @{r.offset} {r.dtype}{list(r.shape)}")
        for i, layer in enumerate(self.layers):
            lines.append(f"  layer {i} {layer.name} ({layer.op}) macs={layer.macs} {layer.mapping}")
        lines.extend(self.describe_row(i) for i in range(len(self.instructions)))
        return "\n".join(lines)


class ProgramBuilder:
    """Accumulates instructions and descriptors; `finish()` freezes them into one table.

    Rows arrive one at a time (`emit`, the vector unit's few per layer) or as whole
    blocks of arrays (`extend`, a GEMM layer's tile loop nest); either way an
    instruction's index is its final row, so dependencies are global row indices.
    """

    def __init__(self):
        self._blocks = []       # Instructions, in program order; dep_ptr of each block starts at 0
        self._rows = []         # pending single rows: (opcode, layer, operands, dram, onchip, work, deps)
        self._n = 0
        self._desc_int, self._desc_float = [], []   # descriptor rows, padded

    def __len__(self) -> int:
        return self._n

    def descriptor(self, ints, floats=()) -> int:
        self._desc_int.append(list(ints) + [0] * (DESC_INTS - len(ints)))
        self._desc_float.append(list(floats) + [0.0] * (DESC_FLOATS - len(floats)))
        return len(self._desc_int) - 1

    def emit(self, op: str, layer: int, operands, deps=(), dram_bytes=0, onchip_bytes=0, work=0) -> int:
        ops = list(operands) + [0] * (N_OPERANDS - len(operands))
        deps = sorted({int(d) for d in deps if d is not None and d >= 0})
        self._rows.append((OPCODE_ID[op], layer, ops, int(dram_bytes), int(onchip_bytes), int(work), deps))
        self._n += 1
        return self._n - 1

    def extend(self, block: Instructions) -> None:
        """Append a block whose dep_ptr starts at 0 and whose dep_idx holds global row indices."""
        self._flush()
        self._blocks.append(block)
        self._n += len(block)

    def _flush(self) -> None:
        if self._rows:
            self._blocks.append(_rows_block(self._rows))
            self._rows = []

    def finish(self) -> tuple:
        self._flush()
        blocks = self._blocks or [_rows_block([])]
        counts = np.concatenate([np.diff(b.dep_ptr) for b in blocks])
        dep_ptr = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=dep_ptr[1:])
        columns = {f.name: np.concatenate([getattr(b, f.name) for b in blocks])
                   for f in fields(Instructions) if f.name != "dep_ptr"}
        desc_int = np.array(self._desc_int, np.int64).reshape(-1, DESC_INTS)
        desc_float = np.array(self._desc_float, np.float64).reshape(-1, DESC_FLOATS)
        return Instructions(**columns, dep_ptr=dep_ptr), desc_int, desc_float


def _rows_block(rows: list) -> Instructions:
    """A block of single rows (opcode, layer, operands, dram, onchip, work, deps)."""
    opcode, layer, ops, dram, onchip, work, deps = zip(*rows) if rows else ((),) * 7
    dep_ptr = np.zeros(len(deps) + 1, np.int64)
    np.cumsum([len(d) for d in deps], out=dep_ptr[1:])
    opcode = np.array(opcode, np.int16)
    return Instructions(
        engine=OPCODE_ENGINE[opcode], opcode=opcode, layer=np.array(layer, np.int32),
        operands=np.array(ops, np.int64).reshape(-1, N_OPERANDS), dram_bytes=np.array(dram, np.int64),
        onchip_bytes=np.array(onchip, np.int64), work=np.array(work, np.int64), dep_ptr=dep_ptr,
        dep_idx=np.array([d for ds in deps for d in ds], np.int64))
