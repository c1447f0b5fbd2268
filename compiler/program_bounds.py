"""Program.verify's bounds check: every address an instruction reads or writes, with the bytes it
spans, against the memory it addresses: DRAM (inside the image, and inside the region the address
falls in) and each other memory the Program declares (inside its bytes, aligned to its elements);
and the tile coordinates a layer's descriptor bounds. In: a Program; out: nothing, or a ProgramError
naming the row, its opcode, the operand or descriptor field and its value, and the memory and its size.

ACCESSES and LIMITS say what each opcode touches (compiler.program.ADDRESS_MEMORY: in which memory).
The checks on operands run in one compiled pass over the table (`_screen`, a sweep lowers hundreds of thousands of rows); the row it stops at is
checked again by the NumPy code below, which words the error. A descriptor's accesses depend only
on the descriptor and the *_dtype operands, so they are checked once per run of rows sharing them.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from compiler.errors import ProgramError
from compiler.program import (ADDRESS_MEMORY, DATATYPES, DESC_FIELDS, DRAM, DTYPE_CODE, DTYPE_OPERANDS, ELEMENT_BYTES,
                              MAX_RANK, N_OPERANDS, OPCODE_NAMES, OPCODES, REQUANT_ID)


def _span(d, stride: str):
    """Elements a strided block spans: 1 + sum((shape - 1) * stride) over its axes (0 when empty)."""
    shape = [getattr(d, f"shape{i}") for i in range(MAX_RANK)]
    span = 1 + sum((s - 1) * getattr(d, f"{stride}{i}") for i, s in enumerate(shape))
    return np.where(np.all(np.array(shape) > 0, axis=0), span, 0)


def _volume(d, stem: str = "shape"):
    return math.prod(getattr(d, f"{stem}{i}") for i in range(MAX_RANK))


def _reduced_span(d):
    """Elements a vec_reduce's source spans: its kept axes (shape, stride) and reduced axes (rshape,
    rstride) together (0 when an axis is empty; -1, refused, when a stride is negative)."""
    axes = [(getattr(d, f"{s}{i}"), getattr(d, f"{t}{i}"))
            for s, t in (("shape", "stride"), ("rshape", "rstride")) for i in range(MAX_RANK)]
    span = 1 + sum((n - 1) * stride for n, stride in axes)
    empty = np.any(np.array([n for n, _ in axes]) <= 0, axis=0)
    backwards = np.any(np.array([stride for _, stride in axes]) < 0, axis=0)
    return np.where(empty, 0, np.where(backwards, -1, span))


def _codes(code):
    """Whether a *_dtype operand column names 8-bit codes."""
    return (code == DTYPE_CODE["uint8"]) | (code == DTYPE_CODE["int8"])


# What each opcode reads and writes: (address, extent, element type). address: an operand, or
# "desc.FIELD" (that field of the row's descriptor), in the memory ADDRESS_MEMORY gives it (`memory_id`);
# element type: a *_dtype operand, a type name, or None (the memory's own type).
# extent, of an operand address: operands (count,), (rows, cols) or (rows, cols, row_stride): rows
# of cols elements, row_stride apart (default cols); of a descriptor field: a function of the rows'
# descriptor columns d and *_dtype operand columns o (attributes by name, NumPy arrays; 0 where a
# row makes no such access).
ACCESSES = {
    "load_im2col": (("dst", ("tm", "tk"), None),
                    ("desc.x", lambda o, d: d.n * d.c * d.h * d.w, "src_dtype"),
                    ("desc.x_zp_addr", lambda o, d: d.x_zp_addr >= 0, "int32")),
    "load_weights": (("src", ("tk", "tn", "src_row_elems"), "src_dtype"),
                     ("dst", ("tk", "tn"), None)),
    "load_bias": (("src", ("tn",), "src_dtype"),
                  ("dst", ("tm", "tn"), None)),
    "matmul": (("a", ("tm", "tk"), None),
               ("w", ("tk", "tn"), None),
               ("acc", ("tm", "tn"), None),
               ("desc.w_zp", lambda o, d: np.where(d.requant != REQUANT_ID["float"], d.cout, 0), "uint8"),
               ("desc.x_zp_addr", lambda o, d: (d.requant != REQUANT_ID["float"]) & (d.x_zp_addr >= 0),
                "int32")),
    "store_tile": (("acc", ("tm", "tn"), None),
                   ("desc.out", lambda o, d: d.n * d.cout * d.oh * d.ow, "dst_dtype"),
                   ("desc.scale", lambda o, d: d.cout * np.select(
                       [np.isin(d.requant, (REQUANT_ID["codes"], REQUANT_ID["scaled"])),
                        d.requant == REQUANT_ID["fixed_point"]], [1, 2], 0), "fp32")),
    "gemm_tile": (("desc.x", lambda o, d: d.n * d.c * d.h * d.w, "src_dtype"),
                  ("desc.weights", lambda o, d: d.cout * d.cin_g * d.kh * d.kw, "w_dtype"),   # [G, K, ng]
                  ("desc.bias", lambda o, d: np.where(d.bias >= 0, d.cout, 0), "fp32"),      # fp32 or int32
                  ("desc.out", lambda o, d: d.n * d.cout * d.oh * d.ow, "dst_dtype"),
                  ("desc.w_zp", lambda o, d: np.where(d.requant != REQUANT_ID["float"], d.cout, 0), "uint8"),
                  ("desc.x_zp_addr", lambda o, d: (d.requant != REQUANT_ID["float"]) & (d.x_zp_addr >= 0),
                   "int32")),
    "vec_relu": (("desc.src", lambda o, d: d.n, "src_dtype"),
                 ("desc.dst", lambda o, d: d.n, "dst_dtype")),
    "vec_binary": (("desc.a", lambda o, d: _span(d, "a_stride"), "a_dtype"),
                   ("desc.b", lambda o, d: _span(d, "b_stride"), "b_dtype"),
                   ("desc.dst", lambda o, d: _volume(d), "dst_dtype")),
    "vec_affine": (("desc.src", lambda o, d: d.n * d.c * d.hw, "src_dtype"),
                   ("desc.scale", lambda o, d: d.c, "scale_dtype"),
                   ("desc.shift", lambda o, d: d.c, "shift_dtype"),
                   ("desc.dst", lambda o, d: d.n * d.c * d.hw, "dst_dtype")),
    "vec_maxpool": (("desc.src", lambda o, d: d.planes * d.h * d.w, "src_dtype"),
                    ("desc.dst", lambda o, d: d.planes * d.oh * d.ow, "dst_dtype")),
    "vec_lrn": (("desc.src", lambda o, d: d.n * d.c * d.hw, "src_dtype"),
                ("desc.dst", lambda o, d: d.n * d.c * d.hw, "dst_dtype")),
    "vec_softmax": (("desc.src", lambda o, d: d.outer * d.axis_len * d.inner, "src_dtype"),
                    ("desc.dst", lambda o, d: d.outer * d.axis_len * d.inner, "dst_dtype"),
                    ("desc.table", lambda o, d: np.where(_codes(o.src_dtype), 256, 0), "fp32")),
    "vec_copy": (("desc.src", lambda o, d: _span(d, "src_stride"), "src_dtype"),
                 ("desc.dst", lambda o, d: _span(d, "dst_stride"), "dst_dtype")),
    "vec_quantize": (("desc.src", lambda o, d: d.outer * d.c * d.inner, "src_dtype"),
                     ("desc.dst", lambda o, d: d.outer * d.c * d.inner, "dst_dtype"),
                     ("desc.scale", lambda o, d: d.c, "fp32"),
                     ("desc.zero_point", lambda o, d: d.c, "int32")),
    "vec_lookup": (("desc.src", lambda o, d: d.n, "src_dtype"),
                   ("desc.dst", lambda o, d: d.n, "dst_dtype"),
                   ("desc.table", lambda o, d: 256, "dst_dtype")),
    "vec_dynamic_quantize": (("desc.src", lambda o, d: d.n, "src_dtype"),
                             ("desc.dst", lambda o, d: d.n, "dst_dtype"),
                             ("desc.scale", lambda o, d: 1, "fp32"),
                             ("desc.zero_point", lambda o, d: 1, "int32")),
    "vec_unary": (("desc.src", lambda o, d: d.n, "src_dtype"),
                  ("desc.dst", lambda o, d: d.n, "dst_dtype")),
    "vec_reduce": (("desc.src", lambda o, d: _reduced_span(d), "src_dtype"),
                   ("desc.dst", lambda o, d: _volume(d), "dst_dtype")),
    "vec_layernorm": (("desc.src", lambda o, d: d.rows * d.n, "src_dtype"),
                      ("desc.scale", lambda o, d: d.n, "scale_dtype"),
                      ("desc.bias", lambda o, d: np.where(d.bias >= 0, d.n, 0), "bias_dtype"),
                      ("desc.dst", lambda o, d: d.rows * d.n, "dst_dtype")),
}
ACCESSES["gemm_tile"] += ACCESSES["store_tile"][2:]      # the requantisation scales
ACCESSES["vec_avgpool"] = ACCESSES["vec_maxpool"]
ACCESSES["vec_dequantize"] = ACCESSES["vec_quantize"]
# operand addresses that are absent when negative (a negative bias address loads zeros)
OPTIONAL = {("load_bias", "src")}
# Tile coordinates a descriptor bounds: (operands, descriptor fields): their sum lies in [0, the product
# of these descriptor fields].
_PIXELS = (("m0", "tm"), (), ("n", "oh", "ow"))
_CHANNELS = (("n0", "tn"), ("cout_off",), ("cout",))
LIMITS = {
    "load_im2col": (_PIXELS, (("k0", "tk"), (), ("cin_g", "kh", "kw")), ((), ("cin_off", "cin_g"), ("c",))),
    "matmul": (_CHANNELS,),
    "store_tile": (_PIXELS, _CHANNELS),
    # channels of a group; its groups: cout = groups x ng, and the group count is the input's c / cin_g
    "gemm_tile": (_PIXELS, (("n0", "tn"), (), ("ng",)), ((), ("ng",), ("cout",)), ((), ("cin_g",), ("c",))),
}
# operands that are tile coordinates or sizes (never negative)
COORDINATES = ("m0", "tm", "k0", "tk", "n0", "tn", "src_row_elems")
ELEMENT_SIZE = np.array([ELEMENT_BYTES[t] for t in DATATYPES], np.int64)   # bytes, by DTYPE_CODE
# memory ids the opcodes address: _screen's tables cover at least these
MEMORY_IDS = 1 + max(memory for addresses in ADDRESS_MEMORY.values() for memory in addresses)


def memory_id(op: str, address: str) -> int:
    """The memory an address of `op` (an operand, or "desc.FIELD") lies in: ADDRESS_MEMORY."""
    return getattr(ADDRESS_MEMORY[op], "desc" if address.startswith("desc.") else address)


def check_bounds(program, where: str) -> None:
    """Raise ProgramError at the first access of `program` outside its memory (see the module doc)."""
    ins, t = program.instructions, _tables()
    dram = _Dram(program.regions)
    undeclared = [-1] * (MEMORY_IDS - len(program.memories))
    capacity = np.array([m.nbytes for m in program.memories] + undeclared, np.int64)
    own_size = np.array([m.element_bytes for m in program.memories] + undeclared, np.int64)
    row, runs = _screen(ins.opcode, ins.operands, program.desc_int, t["desc"], DTYPE_OPERANDS, t["coordinate"],
                        t["limits"], t["accesses"], ELEMENT_SIZE, capacity, own_size, dram.start, dram.reach)
    if row >= 0:
        op = OPCODE_NAMES[ins.opcode[row]]
        _check_rows(program, dram, _Rows(program, where, op, np.array([row])))
        raise ProgramError(f"{where}: row {row} {op} fails the bounds check")   # (the two checks disagree)
    for code in np.unique(ins.opcode[runs]):
        op = OPCODE_NAMES[code]
        rows = _Rows(program, where, op, runs[ins.opcode[runs] == code])
        for access in ACCESSES[op]:
            if access[0].startswith("desc."):
                _check_access(program, dram, rows, *access)


def _check_rows(program, dram, rows: _Rows) -> None:
    """The checks _screen makes, on `rows` (the row it stopped at), in NumPy: the error's words."""
    o, d = rows.o, rows.d
    if d is not None and (j := rows.first((o.desc < 0) | (o.desc >= len(program.desc_int)))) >= 0:
        raise rows.error(j, f"operand desc={o.desc[j]} names no descriptor (the program has {len(program.desc_int)})")
    for name in rows.names:
        col = getattr(o, name)
        if name.endswith("_dtype") and (j := rows.first((col < 0) | (col >= len(DATATYPES)))) >= 0:
            raise rows.error(j, f"operand {name}={col[j]} is no element type (codes 0..{len(DATATYPES) - 1}: "
                             f"{', '.join(DATATYPES)})")
        if name in COORDINATES and (j := rows.first(col < 0)) >= 0:
            raise rows.error(j, f"operand {name}={col[j]} is negative")
    for operands, fields, product in LIMITS.get(rows.op, ()):
        v = sum(getattr(d, f) for f in fields) + sum(getattr(o, x) for x in operands)
        most = math.prod(getattr(d, f) for f in product)
        if (j := rows.first((v < 0) | (v > most))) >= 0:
            raise rows.error(j, f"{'+'.join(fields + operands)}={v[j]} lies outside [0, {most[j]}] "
                             f"({'*'.join(product)} of descriptor {o.desc[j]})")
    for access in ACCESSES[rows.op]:
        if not access[0].startswith("desc."):
            _check_access(program, dram, rows, *access)


def _elements(rows: _Rows, address: str, extent) -> np.ndarray:
    """Elements each row's access spans (ACCESSES' extent)."""
    o = rows.o
    if callable(extent):
        return extent(o, rows.d)
    cols = getattr(o, extent[min(1, len(extent) - 1)])
    n_rows = getattr(o, extent[0]) if len(extent) > 1 else 1
    stride = getattr(o, extent[2]) if len(extent) > 2 else cols
    count = np.where((n_rows > 0) & (cols > 0), (n_rows - 1) * stride + cols, 0)
    return np.where(getattr(o, address) < 0, 0, count) if (rows.op, address) in OPTIONAL else count


def _check_access(program, dram: _Dram, rows: _Rows, address, extent, dtype) -> None:
    """One access of some rows of an opcode: inside its memory, aligned, and (DRAM) inside one region."""
    o, d = rows.o, rows.d
    field = address.removeprefix("desc.")
    memory = memory_id(rows.op, address)
    if memory >= len(program.memories):
        raise rows.error(0, f"it addresses memory {memory}, which the program does not declare (it declares "
                         f"{', '.join(f'{m.id} ({m.name})' for m in program.memories)})")
    declared = program.memories[memory]
    capacity, shown = declared.nbytes, "DRAM" if memory == DRAM else declared.name
    start = getattr(d, field) if field != address else getattr(o, address)
    count = np.broadcast_to(np.asarray(_elements(rows, address, extent), np.int64), start.shape)
    size = np.broadcast_to(ELEMENT_SIZE[getattr(o, dtype)] if dtype in rows.names else
                           ELEMENT_BYTES[dtype] if dtype else declared.element_bytes, start.shape)
    used = count != 0
    # count > capacity first: then count * size cannot overflow
    bad = used & ((count < 0) | (start < 0) | (start > capacity) | (count > capacity) |
                  (count * size > capacity - start) | (start % size != 0))
    if memory == DRAM:
        bad |= used & ~dram.inside(start, start + count * size)
    if not bad.any():
        return
    j = int(np.argmax(bad))
    s, n, b = int(start[j]), int(count[j]), int(size[j])
    label = f"descriptor {o.desc[j]} field {field}={s}" if field != address else f"operand {address}={s}"
    span = f"{label} addresses {shown} bytes [{s}, {s + n * b})"
    if n < 0:
        raise rows.error(j, f"{label}: its extent, {n} elements, is negative")
    if s < 0 or s + n * b > capacity:
        raise rows.error(j, f"{span}, outside its {capacity} bytes")
    if s % b:
        raise rows.error(j, f"{label} is not a multiple of its elements' {b} bytes in {shown}")
    raise rows.error(j, f"{span}, {dram.where(s)}")


class _Columns:
    """Named int64 columns of a table (operands by their OPCODES names, or descriptor fields): of the
    rows `index` names (each column gathered on first use), or of every row."""

    def __init__(self, table: np.ndarray, names: tuple, index: np.ndarray | None = None):
        self._table, self._names, self._index, self._cache = table, names, index, {}

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._cache:
            col = self._names.index(name)
            self._cache[name] = self._table[:, col] if self._index is None else self._table[self._index, col]
        return self._cache[name]


class _Rows:
    """Some rows of one opcode (indices into the instruction table) and their columns."""

    def __init__(self, program, where: str, op: str, rows: np.ndarray):
        self.where, self.op, self.rows = where, op, rows
        self.names = OPCODES[op][1]
        self.o = _Columns(program.instructions.operands[rows], self.names)
        self.d = _Columns(program.desc_int, DESC_FIELDS[op], self.o.desc) if "desc" in self.names else None

    def error(self, j: int, text: str) -> ProgramError:
        return ProgramError(f"{self.where}: row {self.rows[j]} {self.op}: {text}")

    @staticmethod
    def first(bad: np.ndarray) -> int:
        """The first j where `bad` holds; -1 when none."""
        return int(np.argmax(bad)) if bad.any() else -1


class _Dram:
    """The DRAM image's regions, sorted by offset, to find whether a span lies inside one."""

    def __init__(self, regions: dict):
        self.regions = sorted(regions.values(), key=lambda r: r.offset)
        self.start = np.array([r.offset for r in self.regions], np.int64)
        # furthest end of the regions starting at or before each one (regions may share bytes: views)
        self.reach = np.maximum.accumulate(np.array([r.offset + r.nbytes for r in self.regions] or [-1], np.int64))

    def inside(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Whether each span [start, end) lies inside one region."""
        last = np.searchsorted(self.start, start, side="right") - 1
        return (last >= 0) & (self.reach[np.maximum(last, 0)] >= end)

    def where(self, start: int) -> str:
        """Which region a span starting at byte `start` overruns, or the gap it starts in."""
        last = int(np.searchsorted(self.start, start, side="right")) - 1
        if last < 0:
            return "before the first region"
        r = self.regions[last]
        if start < r.offset + r.nbytes:
            return f"overrunning region '{r.name}' (bytes [{r.offset}, {r.offset + r.nbytes}))"
        return f"in no region (after '{r.name}', which ends at byte {r.offset + r.nbytes})"


def _column(op: str, name: str | None) -> int:
    """An operand's column in `op`'s rows; -1 when not one of its operands (or None)."""
    return OPCODES[op][1].index(name) if name in OPCODES[op][1] else -1


def _padded(values: list, n: int) -> list:
    return values + [-1] * (n - len(values))


@functools.cache
def _tables() -> dict:
    """ACCESSES (operand addresses), LIMITS and COORDINATES as int tables by opcode id, for _screen.
    accesses [op, k]: valid, address, rows, cols, row_stride operand columns (-1: none), memory id,
    *_dtype operand column (-1: none), element bytes (-1: the memory's own), optional; limits [op, k]:
    valid, two operand columns, two descriptor fields added to them, three whose product bounds the sum."""
    accesses = np.full((len(OPCODES), 3, 9), -1, np.int64)
    limits = np.full((len(OPCODES), max(map(len, LIMITS.values())), 8), -1, np.int64)
    for code, op in enumerate(OPCODE_NAMES):
        direct = [access for access in ACCESSES[op] if not access[0].startswith("desc.")]
        for k, (address, extent, dtype) in enumerate(direct):
            n_rows, cols, stride = {1: (None, extent[0], None), 2: (*extent, None), 3: extent}[len(extent)]
            accesses[code, k] = (1, _column(op, address), _column(op, n_rows), _column(op, cols),
                                 _column(op, stride), memory_id(op, address), _column(op, dtype),
                                 ELEMENT_BYTES.get(dtype, -1), (op, address) in OPTIONAL)
        for k, (operands, fields, product) in enumerate(LIMITS.get(op, ())):
            limits[code, k] = ([1] + _padded([_column(op, x) for x in operands], 2) +
                               _padded([DESC_FIELDS[op].index(f) for f in fields], 2) +
                               _padded([DESC_FIELDS[op].index(f) for f in product], 3))
    coordinate = [[i < len(names) and names[i] in COORDINATES for i in range(N_OPERANDS)]
                  for names in (OPCODES[op][1] for op in OPCODE_NAMES)]
    return {"accesses": accesses, "limits": limits, "coordinate": np.array(coordinate, bool),
            "desc": np.array([_column(op, "desc") for op in OPCODE_NAMES], np.int64)}


@njit(cache=True)
def _screen(opcode, operands, desc_int, desc_col, dtype_operand, coordinate, limits, accesses, element_size,
            capacity, own_size, region_start, region_reach):
    """_check_rows in one compiled pass over the table (tables from _tables; capacity and own_size per
    memory id, -1: undeclared): (the first row failing a check, -1 when none; the rows starting a run
    of their opcode's rows with the same descriptor and *_dtype operands)."""
    n_desc, n_types = desc_int.shape[0], len(element_size)
    previous = np.full(len(desc_col), -1)      # the last row of each opcode
    runs = np.empty(len(opcode), np.int64)
    n_runs = 0
    k = -1                                      # the region of the last DRAM span
    for i in range(len(opcode)):               # (indexing, not row views: a view per row costs 3x)
        op = opcode[i]
        dc, p = desc_col[op], previous[op]
        desc = operands[i, dc] if dc >= 0 else 0
        if dc >= 0 and (desc < 0 or desc >= n_desc):
            return i, runs[:n_runs]
        new_run = p < 0 or (dc >= 0 and desc != operands[p, dc])
        for c in range(operands.shape[1]):
            v = operands[i, c]
            if dtype_operand[op, c]:
                if v < 0 or v >= n_types:
                    return i, runs[:n_runs]
                new_run = new_run or v != operands[p, c]
            elif coordinate[op, c] and v < 0:
                return i, runs[:n_runs]
        if new_run:
            runs[n_runs] = i
            n_runs += 1
        previous[op] = i
        for x in range(limits.shape[1]):
            if limits[op, x, 0] < 0:
                break
            value, most = 0, 1
            for y in range(1, 3):
                value += operands[i, limits[op, x, y]] if limits[op, x, y] >= 0 else 0
            for y in range(3, 5):
                value += desc_int[desc, limits[op, x, y]] if limits[op, x, y] >= 0 else 0
            for y in range(5, 8):
                most *= desc_int[desc, limits[op, x, y]] if limits[op, x, y] >= 0 else 1
            if value < 0 or value > most:
                return i, runs[:n_runs]
        for x in range(accesses.shape[1]):
            if accesses[op, x, 0] < 0:
                break
            s = operands[i, accesses[op, x, 1]]
            rows = operands[i, accesses[op, x, 2]] if accesses[op, x, 2] >= 0 else 1
            cols = operands[i, accesses[op, x, 3]]
            if rows <= 0 or cols <= 0 or (accesses[op, x, 8] == 1 and s < 0):
                continue                        # no access (a negative size fails above)
            n = (rows - 1) * (operands[i, accesses[op, x, 4]] if accesses[op, x, 4] >= 0 else cols) + cols
            m = accesses[op, x, 5]
            b = element_size[operands[i, accesses[op, x, 6]]] if accesses[op, x, 6] >= 0 else \
                (accesses[op, x, 7] if accesses[op, x, 7] > 0 else own_size[m])
            top = capacity[m]
            # n > top first: then n * b cannot overflow; element sizes are powers of two (no division)
            if n < 0 or s < 0 or s > top or n > top or n * b > top - s or s & (b - 1) != 0:
                return i, runs[:n_runs]
            if m == 0:                          # DRAM (memory 0): inside one region too
                if k < 0 or region_start[k] > s or (k + 1 < len(region_start) and region_start[k + 1] <= s):
                    k = np.searchsorted(region_start, s, side="right") - 1   # not the last span's region
                if k < 0 or region_reach[k] < s + n * b:
                    return i, runs[:n_runs]
    return -1, runs[:n_runs]
