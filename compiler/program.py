"""The Program: what a target emits and the simulator runs (contract 2 of DESIGN.md).

A Program holds
  * its memories (Program.memories, `Memory` each: id, name, level, element type, bytes): id 0 is
    DRAM, the others the on-chip memories the target declares;
  * its engines (Program.engines, by name): each issues its instructions in program order, an
    instruction starting when its engine is free and its predecessors have finished;
  * a memory plan: DRAM regions (byte offset, shape, element type, kind) for inputs,
    weights, activations and outputs;
  * the initial DRAM image (constants placed at their offsets, encoded in their type);
  * an instruction table, struct-of-arrays, one row per instruction: engine,
    opcode, layer index, eight int64 operands, DRAM and on-chip bytes moved,
    work (MACs or vector element-ops) and explicit predecessor dependencies (CSR);
  * descriptor tables (int64 and float64 rows) holding per-layer geometry that
    many instructions share (a conv's shape, a pooling window, ...).
The memory model: every DRAM region and on-chip memory has one element type
(ELEMENT_BYTES gives its size); addresses are bytes everywhere, sizes and strides are
elements of the memory they index. ADDRESS_MEMORY says which memory id each address of an
opcode lives in. An instruction names the element type of the DRAM data it reads or writes in
its *_dtype operands (DTYPE_CODE; fp32 is 0); on-chip operands have their memory's type.
The layouts are declared once, by name: OPCODES (operands), ADDRESS_MEMORY, DESC_FIELDS and
DESC_FLOAT_FIELDS (descriptor fields); OPCODE, OPERAND, DESC and DESC_FLOAT give their ids and
columns as IntEnums (ints by name), which writers, readers and the Numba kernels index with
(`desc[CONV.kh]`, constant once compiled: compiler/numba_cache.py keeps such caches fresh).
sim/reference.py defines each opcode executably. `Program.verify()` checks the table;
`str(program)` prints one line per instruction.
"""
from __future__ import annotations

import functools
import hashlib
import math
from collections import namedtuple
from dataclasses import dataclass, field, fields
from enum import IntEnum

import numpy as np

from compiler.errors import ProgramError
from compiler.mapping import Mapping
from compiler.numerics import encode
from compiler.spec import DATATYPE_BITS, DATATYPES

# The kinds of unit an opcode runs on (its OPCODES entry). A Program declares its own engines
# (Program.engines, by name; an instruction's `engine` indexes them) and may run an opcode on any of
# them; a target whose engines are these units (one each, in this order) gets them by default.
UNITS = ("dma_load", "matrix", "vector", "dma_store")
UNIT_ID = {name: i for i, name in enumerate(UNITS)}

# Memory ids (Program.memories[id]): 0 is DRAM; a target declares what memory each other id is. The
# matrix opcodes take their operands from, and accumulate in, these ids (ADDRESS_MEMORY):
DRAM, MATRIX_A, MATRIX_B, MATRIX_ACC = 0, 1, 2, 3

# opcode -> (unit, operand names). Addresses are bytes; sizes are elements; *_dtype: DTYPE_CODE
# of the DRAM data read (src) or written (dst); an on-chip memory holds its own type.
# What each opcode reads and writes, which verify() bounds-checks: ACCESSES in compiler/program_bounds.py.
OPCODES = {
    # conv desc -> [tm,tk] tile of the matrix unit's A operand
    "load_im2col": ("dma_load", ("desc", "m0", "tm", "k0", "tk", "dst", "src_dtype")),
    # DRAM [tk,tn] rows -> the B (weight) operand
    "load_weights": ("dma_load", ("src", "tk", "tn", "src_row_elems", "dst", "src_dtype")),
    # bias[tn] (src<0: zeros) -> accumulator tile [tm,tn]
    "load_bias": ("dma_load", ("src", "tm", "tn", "dst", "src_dtype")),
    # acc[tm,tn] += a[tm,tk] @ w[tk,tn] (desc: the layer's, for its integer fields; n0: the tile's first
    # column in the group, which picks its per-column weight zero points)
    "matmul": ("matrix", ("a", "w", "acc", "tm", "tk", "tn", "desc", "n0")),
    # accumulator tile -> DRAM (conv desc layout, activation)
    "store_tile": ("dma_store", ("desc", "acc", "m0", "tm", "n0", "tn", "dst_dtype")),
    # the conv/GEMM output tile [m0:m0+tm, n0:n0+tn] of every group, over the whole K, from DRAM to DRAM:
    # bias (desc.bias; < 0: zeros), A from the input (im2col), W from desc.weights ([G, K, ng] rows), the
    # accumulator's epilogue as store_tile's (activation, requantisation): a thread block's or a core's
    # GEMM tile on a target whose on-chip staging is in its timing model, not in the Program's memories
    "gemm_tile": ("matrix", ("desc", "m0", "tm", "n0", "tn", "src_dtype", "w_dtype", "dst_dtype")),
    "vec_relu": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_binary": ("vector", ("desc", "a_dtype", "b_dtype", "dst_dtype")),
    "vec_affine": ("vector", ("desc", "src_dtype", "scale_dtype", "shift_dtype", "dst_dtype")),
    "vec_maxpool": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_avgpool": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_lrn": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_softmax": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_copy": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_quantize": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_dequantize": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_lookup": ("vector", ("desc", "src_dtype", "dst_dtype")),
    "vec_dynamic_quantize": ("vector", ("desc", "src_dtype", "dst_dtype")),
    # y = f(x) elementwise, f one of UNARY_OPS (desc.op)
    "vec_unary": ("vector", ("desc", "src_dtype", "dst_dtype")),
    # a sum, mean or max (REDUCE_OPS) over some axes of a strided block
    "vec_reduce": ("vector", ("desc", "src_dtype", "dst_dtype")),
    # LayerNormalization of each row of n elements, per-element scale and (bias >= 0) bias
    "vec_layernorm": ("vector", ("desc", "src_dtype", "scale_dtype", "bias_dtype", "dst_dtype")),
}
OPCODE_ID = {name: i for i, name in enumerate(OPCODES)}
OPCODE_NAMES = tuple(OPCODES)


def _memories(**address_memory):
    """An opcode's ADDRESS_MEMORY entry: a named tuple, address -> memory id."""
    return namedtuple("Addresses", address_memory)(**address_memory)


# opcode -> the memory id each of its addresses lies in: each address operand by name, and "desc" for
# every address its descriptor holds. A vector opcode's descriptor addresses one memory (its kernel
# takes one).
ADDRESS_MEMORY = {
    "load_im2col": _memories(dst=MATRIX_A, desc=DRAM),
    "load_weights": _memories(src=DRAM, dst=MATRIX_B),
    "load_bias": _memories(src=DRAM, dst=MATRIX_ACC),
    "matmul": _memories(a=MATRIX_A, w=MATRIX_B, acc=MATRIX_ACC, desc=DRAM),
    "store_tile": _memories(acc=MATRIX_ACC, desc=DRAM),
    "gemm_tile": _memories(desc=DRAM),
    **{op: _memories(desc=DRAM) for op, (unit, _) in OPCODES.items() if unit == "vector"},
}
OPCODE_UNIT = np.array([UNIT_ID[u] for u, _ in OPCODES.values()], dtype=np.int8)
N_OPERANDS = 8
# [opcode, operand]: True where that operand is an element-type code
DTYPE_OPERANDS = np.array([[i < len(names) and names[i].endswith("_dtype") for i in range(N_OPERANDS)]
                           for _, names in OPCODES.values()])
# Element types: bytes per element (the one table every byte count derives from) and the code an
# instruction operand uses for each (fp32 = 0, so an fp32 program's dtype operands are all zero).
ELEMENT_BYTES = {name: bits // 8 for name, bits in DATATYPE_BITS.items()}
DTYPE_CODE = {name: i for i, name in enumerate(DATATYPES)}
BYTES = ELEMENT_BYTES["fp32"]   # the default element size (fp32) of every operand
DESC_INTS = 32
DESC_FLOATS = 4

# Conv/GEMM descriptor fields (int row); GEMM [M,K]x[K,N] uses N=M, C=K, H=W=kh=kw=1. Then the
# integer datapath's fields (all 0 on a float layer): requant (REQUANT_ID: what store_tile makes of
# the int32 accumulator), the input zero point, the byte address of the per-output-channel weight
# zero points (codes of the weight type), the output zero point, the byte address of the
# per-output-channel fp32 requantisation scales, and the DTYPE_CODE of the input and weight codes
# (uint8 or int8) the matrix operand memories hold for this layer; x_zp_addr: byte address of an int32 input
# zero point computed at run time (dynamic quantisation), else -1. Read by gemm_tile only: weights,
# the byte address of the layer's [G, K, ng] weight matrices; bias, of its [cout] biases (fp32, or
# int32 on an integer layer; -1: none); ng, output channels per group (cout = G x ng).
CONV_FIELDS = ("x", "n", "c", "h", "w", "kh", "kw", "sh", "sw", "pt", "pl", "dh", "dw",
               "oh", "ow", "cin_g", "cin_off", "out", "cout", "cout_off", "activation",
               "requant", "x_zp", "w_zp", "y_zp", "scale", "x_code", "w_code", "x_zp_addr",
               "weights", "bias", "ng")
# float: no integer datapath; codes: y = sat(rne(F(acc) * scale[c]) + y_zp) in the output's 8-bit
# type; int32: the accumulator itself (ConvInteger/MatMulInteger); scaled: F(F(acc) * scale[c]) as
# fp32 (QGemm without an output scale); fixed_point: codes through a Q31 multiplier and a rounding
# right shift per channel (`scale` then addresses int32 [multiplier, shift] pairs)
REQUANT_ID = {"float": 0, "codes": 1, "int32": 2, "scaled": 3, "fixed_point": 4}
ACTIVATION_ID = {"none": 0, "relu": 1}
BINARY_OPS = {"add": 0, "sub": 1, "mul": 2, "div": 3, "pow": 4, "min": 5, "max": 6}
# vec_unary's functions (desc.op; sim/reference.py defines each, docs/ops.md states their precision);
# round_fp16/round_bf16: the value rounded to that type (a Cast between float types)
UNARY_OPS = {"erf": 0, "tanh": 1, "sigmoid": 2, "exp": 3, "log": 4, "sqrt": 5, "reciprocal": 6, "neg": 7,
             "abs": 8, "gelu": 9, "gelu_tanh": 10, "hard_sigmoid": 11, "hard_swish": 12, "clip": 13,
             "round_fp16": 14, "round_bf16": 15}
REDUCE_OPS = {"sum": 0, "mean": 1, "max": 2}
MAX_RANK = 6


def _fields(text: str) -> tuple:
    """Descriptor field names from a layout string; "shape[6]" stands for shape0 .. shape5."""
    out = []
    for word in text.split():
        name, _, count = word.partition("[")
        out.extend([f"{name}{i}" for i in range(int(count[:-1]))] if count else [name])
    return tuple(out)


# Descriptor int fields per opcode, by name (compiler/targets/vector.py documents and writes the vector
# ones; the trailing zero points, table and is_global are read on 8-bit codes only). Addresses are bytes.
_POOL = _fields("src dst planes h w oh ow kh kw sh sw pt pl count_include_pad pb pr x_zp y_zp is_global")
_QUANTIZE = _fields("src dst outer c inner scale zero_point")
DESC_FIELDS = {
    "load_im2col": CONV_FIELDS, "matmul": CONV_FIELDS, "store_tile": CONV_FIELDS, "gemm_tile": CONV_FIELDS,
    "vec_relu": _fields("src dst n"),
    "vec_binary": _fields("a b dst op rank shape[6] a_stride[6] b_stride[6] a_zp b_zp y_zp"),
    "vec_affine": _fields("src scale shift dst n c hw"),
    "vec_maxpool": _POOL, "vec_avgpool": _POOL,
    "vec_lrn": _fields("src dst n c hw size"),
    "vec_softmax": _fields("src dst outer axis_len inner table y_zp"),
    "vec_copy": _fields("src dst shape[6] src_stride[6] dst_stride[6]"),
    "vec_quantize": _QUANTIZE, "vec_dequantize": _QUANTIZE,
    "vec_lookup": _fields("src dst n table"),
    "vec_dynamic_quantize": _fields("src dst n scale zero_point"),
    "vec_unary": _fields("src dst n op"),
    "vec_reduce": _fields("src dst op shape[6] stride[6] rshape[6] rstride[6]"),
    "vec_layernorm": _fields("src scale bias dst rows n"),
}
# Descriptor float fields per opcode (the others have none). vec_binary on 8-bit codes: add's
# F(scale / y_scale) of each input, mul's F(a_scale * b_scale) / y_scale; vec_avgpool on codes: the
# input's and output's scales and x_scale / (y_scale * window) of a global pool; vec_softmax on
# codes: floor(F(1 / y_scale)); vec_unary: hard_sigmoid's alpha and beta, clip's min (alpha) and max (beta);
# vec_layernorm: its epsilon.
DESC_FLOAT_FIELDS = {
    "vec_binary": _fields("a_ratio b_ratio product_ratio"),
    "vec_avgpool": _fields("x_scale y_scale global_scale"),
    "vec_lrn": _fields("alpha beta bias"),
    "vec_softmax": _fields("inv_y_scale"),
    "vec_unary": _fields("alpha beta"),
    "vec_layernorm": _fields("epsilon"),
}


def _columns(name: str, names: tuple) -> type:
    """The columns `names` take, in order, as an IntEnum: _columns("t", ("a", "b")).b == 1."""
    return IntEnum(name, list(names), start=0, module=__name__)


# The tables above as IntEnums (ints by name), for every writer and reader and, compiled in as
# constants, the Numba kernels (an IntEnum member costs Numba no more than an int; a named tuple's
# field did): OPCODE.matmul is its opcode id; OPERAND["matmul"].tk its operand column;
# DESC["matmul"].kh and DESC_FLOAT["vec_lrn"].beta its descriptor columns.
OPCODE = _columns("Opcode", OPCODE_NAMES)
OPERAND = {op: _columns(op, names) for op, (_, names) in OPCODES.items()}
DESC = {op: _columns(op, names) for op, names in DESC_FIELDS.items()}
DESC_FLOAT = {op: _columns(op, DESC_FLOAT_FIELDS.get(op, ())) for op in DESC_FIELDS}
CONV = DESC["matmul"]      # the conv/GEMM descriptor that load_im2col, matmul and store_tile share
# A fingerprint of every table a compiled kernel may hold as constants (compiler/numba_cache.py)
LAYOUT = int.from_bytes(hashlib.sha256(repr((
    UNITS, OPCODES, {op: tuple(m._asdict().items()) for op, m in ADDRESS_MEMORY.items()}, DESC_FIELDS,
    DESC_FLOAT_FIELDS, DATATYPES, REQUANT_ID, ACTIVATION_ID, BINARY_OPS, N_OPERANDS, DESC_INTS, DESC_FLOATS,
    UNARY_OPS, REDUCE_OPS,
)).encode()).digest()[:7], "little")


@dataclass(frozen=True)
class Region:
    name: str
    offset: int          # bytes from DRAM base
    shape: tuple
    kind: str            # input | weight | activation | output
    dtype: str = "fp32"  # element type (ELEMENT_BYTES)

    @property
    def nbytes(self) -> int:
        return int(math.prod(self.shape)) * ELEMENT_BYTES[self.dtype]   # Python ints: placed per design point


@dataclass(frozen=True)
class Memory:
    """A memory the instructions address, by id (its index in Program.memories; 0 is DRAM)."""
    id: int
    name: str            # the target's name for it, as in its stats levels (e.g. "dram")
    level: int           # hops from DRAM: 0 DRAM itself, 1 filled from DRAM, 2 filled from level 1, ...
    dtype: str | None    # element type (ELEMENT_BYTES); None: DRAM, whose regions have their own
    nbytes: int

    @property
    def element_bytes(self) -> int:
        """Bytes per element: of its type, or 1 where instructions name the type (DRAM)."""
        return ELEMENT_BYTES[self.dtype] if self.dtype else 1


def dram_memory(nbytes: int) -> Memory:
    """Memory 0: the DRAM image (regions of several types, each instruction naming what it reads)."""
    return Memory(DRAM, "dram", 0, None, nbytes)


@dataclass(frozen=True)
class Layer:
    name: str            # source node name
    op: str              # IR op
    macs: int
    mapping: Mapping | None = None   # unit, tiling, loop order, dataflow (compiler/mapping.py)


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
    memories: tuple          # Memory per id: DRAM (dram_memory) first, then the target's on-chip ones
    constants: list          # (Region, values): placed in DRAM before the run, encoded as region.dtype
    instructions: Instructions
    desc_int: np.ndarray     # int64 [n_desc, DESC_INTS]
    desc_float: np.ndarray   # float64 [n_desc, DESC_FLOATS]
    layers: list             # Layer per layer index
    inputs: list             # graph input names (regions)
    outputs: list            # graph output names (regions)
    engines: tuple = UNITS   # engine names; an instruction's `engine` indexes them (each issues in order)
    _image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def dram_image(self) -> np.ndarray:
        """A fresh copy of the initial DRAM contents (uint8 [dram_size]). Built on first use
        and kept, so timing-only runs never pay for it (nor for encoding the constants in
        narrow types) and functional runs pay only a copy."""
        if self._image is None:
            self._image = np.zeros(self.dram_size, np.uint8)
            for region, data in self.constants:
                raw = encode(np.ravel(data), region.dtype).view(np.uint8)
                self._image[region.offset: region.offset + raw.size] = raw
        return self._image.copy()

    @property
    def dram_size(self) -> int:
        """Bytes of the DRAM image (memory 0)."""
        return self.memories[DRAM].nbytes

    def memory(self, name: str) -> Memory:
        """The declared memory called `name` (a target reading its own memories)."""
        found = [m for m in self.memories if m.name == name]
        if not found:
            raise ProgramError(f"program ({self.target}) declares no memory '{name}' "
                               f"(it declares {', '.join(m.name for m in self.memories)})")
        return found[0]

    def addressed(self, op: str, address: str) -> Memory | None:
        """The memory an address of opcode `op` lies in (ADDRESS_MEMORY), or None if undeclared here."""
        memory_id = getattr(ADDRESS_MEMORY[op], address)
        return self.memories[memory_id] if memory_id < len(self.memories) else None

    def verify(self, bounds: bool = True) -> "Program":
        """Check the contract, or raise ProgramError naming the first instruction row that breaks it:
        the table's shape, known opcodes on their engines, layer and dependency indices, regions inside
        DRAM, and (with `bounds`) every address and size against the memory it addresses
        (compiler/program_bounds.py). Lowering checks the structure; the bounds are checked where
        memory is touched (a functional simulate), not on every timing-only evaluation of a sweep."""
        from compiler.program_bounds import check_bounds   # it reads this module's tables

        ins = self.instructions
        n = len(ins)
        where = f"program ({self.target})"
        for name, col in (("engine", ins.engine), ("layer", ins.layer), ("dram_bytes", ins.dram_bytes),
                          ("onchip_bytes", ins.onchip_bytes), ("work", ins.work)):
            if len(col) != n:
                raise ProgramError(f"{where}: column {name} has {len(col)} rows, expected {n}")
        if ins.operands.shape != (n, N_OPERANDS) or len(ins.dep_ptr) != n + 1:
            raise ProgramError(f"{where}: operand or dependency table has the wrong shape")
        for i, m in enumerate(self.memories):
            if m.id != i or m.nbytes < 0 or (m.dtype not in DATATYPES and (i != DRAM or m.dtype is not None)):
                raise ProgramError(f"{where}: memory {i} is {m}; memory i has id i, bytes >= 0 and an element "
                                   f"type ({', '.join(DATATYPES)}; DRAM, id {DRAM}, may leave it None)")
        if not self.memories:
            raise ProgramError(f"{where}: the program declares no memories (memory {DRAM} is DRAM)")
        if self.desc_int.shape[1:] != (DESC_INTS,) or self.desc_float.shape != (len(self.desc_int), DESC_FLOATS):
            raise ProgramError(f"{where}: descriptor tables have shapes {self.desc_int.shape} and "
                               f"{self.desc_float.shape}, expected [n, {DESC_INTS}] and [n, {DESC_FLOATS}]")
        bad = np.nonzero((ins.opcode < 0) | (ins.opcode >= len(OPCODES)))[0]
        if len(bad):
            i = int(bad[0])
            raise ProgramError(f"{where}: row {i} has unknown opcode {int(ins.opcode[i])} (opcodes are "
                               f"0..{len(OPCODES) - 1}: {', '.join(OPCODES)})")
        if not self.engines or len(set(self.engines)) != len(self.engines) or \
                not all(isinstance(e, str) and e for e in self.engines):
            raise ProgramError(f"{where}: engines {self.engines!r}; a program declares one or more engines by "
                               "distinct names")
        bad = np.nonzero((ins.engine < 0) | (ins.engine >= len(self.engines)))[0]
        if len(bad):
            i = int(bad[0])
            raise ProgramError(f"{where}: row {i} {OPCODE_NAMES[ins.opcode[i]]} names engine {ins.engine[i]} (the "
                               f"program declares {len(self.engines)}: {', '.join(self.engines)})")
        bad = np.nonzero((ins.layer < 0) | (ins.layer >= len(self.layers)))[0]
        if len(bad):
            i = int(bad[0])
            raise ProgramError(f"{where}: row {i} {OPCODE_NAMES[ins.opcode[i]]} names layer {ins.layer[i]} "
                               f"(the program has {len(self.layers)})")
        rows = np.repeat(np.arange(n), np.diff(ins.dep_ptr))
        bad = np.nonzero((ins.dep_idx >= rows) | (ins.dep_idx < 0))[0]
        if len(bad):
            i = int(rows[bad[0]])
            raise ProgramError(f"{where}: row {i} {OPCODE_NAMES[ins.opcode[i]]} depends on a later row")
        for region in self.regions.values():
            if region.offset < 0 or region.offset + region.nbytes > self.dram_size:
                raise ProgramError(f"{where}: region {region.name} lies outside DRAM")
        if bounds:
            check_bounds(self, where)
        return self

    def describe_row(self, i: int) -> str:
        ins = self.instructions
        op = OPCODE_NAMES[ins.opcode[i]]
        engine, names = self.engines[ins.engine[i]], OPCODES[op][1]
        vals = ins.operands[i]
        text = " ".join(f"{nm}={DATATYPES[int(v)] if nm.endswith('_dtype') else int(v)}"
                        for nm, v in zip(names, vals))
        deps = ins.dep_idx[ins.dep_ptr[i]:ins.dep_ptr[i + 1]]
        layer = self.layers[ins.layer[i]].name
        return (f"{i:6d} {engine:<9} {op:<12} {text:<60} dram_B={int(ins.dram_bytes[i])} "
                f"deps={','.join(str(int(d)) for d in deps) or '-'}  # {layer}")

    def __str__(self) -> str:
        lines = [f"program target={self.target} instructions={len(self.instructions)} "
                 f"dram_bytes={self.dram_size} engines={','.join(self.engines)}"]
        for m in self.memories:
            lines.append(f"  memory {m.id} {m.name} level={m.level} {m.dtype or 'per-region'} bytes={m.nbytes}")
        for r in self.regions.values():
            lines.append(f"  region {r.kind:<10} {r.name} @{r.offset} {r.dtype}{list(r.shape)}")
        for i, layer in enumerate(self.layers):
            mapping = layer.mapping.text() if layer.mapping else ""
            lines.append(f"  layer {i} {layer.name} ({layer.op}) macs={layer.macs} {mapping}")
        lines.extend(self.describe_row(i) for i in range(len(self.instructions)))
        return "\n".join(lines)


class ProgramBuilder:
    """Accumulates instructions and descriptors; `finish()` freezes them into one table.

    Rows arrive one at a time (`emit`, the vector unit's few per layer) or as whole
    blocks of arrays (`extend`, a GEMM layer's tile loop nest); either way an
    instruction's index is its final row, so dependencies are global row indices.
    `engines` are the Program's engine names (Program.engines); a row runs on the one `emit` names,
    by default the engine named as its opcode's unit.
    """

    def __init__(self, engines: tuple = UNITS):
        self.engines = tuple(engines)
        self._blocks = []       # Instructions, in program order; dep_ptr of each block starts at 0
        self._rows = []         # pending single rows: (opcode, layer, operands, dram, onchip, work, deps)
        self._n = 0
        self._desc_int, self._desc_float = [], []   # descriptor rows, padded

    def __len__(self) -> int:
        return self._n

    def descriptor(self, op: str, ints: dict, floats: dict | None = None) -> int:
        """A descriptor in the layout of opcode `op` (DESC_FIELDS, DESC_FLOAT_FIELDS), fields by name; a
        field group such as shape[6] may come whole (shape=[...]). Fields not given are 0. Its index."""
        self._desc_int.append(_named_row(DESC_FIELDS[op], ints, DESC_INTS, f"{op} descriptor"))
        self._desc_float.append(_named_row(DESC_FLOAT_FIELDS.get(op, ()), floats or {}, DESC_FLOATS,
                                           f"{op} float descriptor", 0.0))
        return len(self._desc_int) - 1

    def emit(self, op: str, layer: int, operands: dict, deps=(), dram_bytes=0, onchip_bytes=0, work=0,
             engine: str | None = None) -> int:
        """Append one row of opcode `op`, its operands by name (OPCODES; those not given are 0), on
        `engine` (default: the engine named as the opcode's unit). Its row."""
        ops = _named_row(OPCODES[op][1], operands, N_OPERANDS, f"opcode {op}")
        deps = sorted({int(d) for d in deps if d is not None and d >= 0})
        engine = OPCODES[op][0] if engine is None else engine
        if engine not in self.engines:
            raise ValueError(f"opcode {op} on engine {engine!r}: the program's engines are {', '.join(self.engines)}")
        self._rows.append((self.engines.index(engine), OPCODE_ID[op], layer, ops, int(dram_bytes),
                           int(onchip_bytes), int(work), deps))
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


@functools.cache
def _columns(names: tuple) -> dict:
    """name -> column of a layout (built once per layout, not per emitted row)."""
    return {name: i for i, name in enumerate(names)}


def _named_row(names: tuple, values: dict, width: int, what: str, fill=0) -> list:
    """A table row of `width` columns holding `values` at the columns of their `names`: a name, or a
    field group's stem (shape for shape0 .. shape5) with a sequence of its length."""
    row = [fill] * width
    column = _columns(names)
    for name, value in values.items():
        if name in column:
            row[column[name]] = value
        elif f"{name}0" in column and not np.isscalar(value) and \
                sum(f"{name}{i}" in column for i in range(len(value) + 1)) == len(value):
            for i, v in enumerate(value):
                row[column[f"{name}{i}"]] = v
        else:
            raise ValueError(f"{what} has no field {name!r} for {value!r}; its fields: {', '.join(names)}")
    return row


def _rows_block(rows: list) -> Instructions:
    """A block of single rows (engine, opcode, layer, operands, dram, onchip, work, deps)."""
    engine, opcode, layer, ops, dram, onchip, work, deps = zip(*rows) if rows else ((),) * 8
    dep_ptr = np.zeros(len(deps) + 1, np.int64)
    np.cumsum([len(d) for d in deps], out=dep_ptr[1:])
    opcode = np.array(opcode, np.int16)
    return Instructions(
        engine=np.array(engine, np.int8), opcode=opcode, layer=np.array(layer, np.int32),
        operands=np.array(ops, np.int64).reshape(-1, N_OPERANDS), dram_bytes=np.array(dram, np.int64),
        onchip_bytes=np.array(onchip, np.int64), work=np.array(work, np.int64), dep_ptr=dep_ptr,
        dep_idx=np.array([d for ds in deps for d in ds], np.int64))
