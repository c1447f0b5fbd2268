"""Program.verify's bounds check (compiler/program_bounds.py): the lowered models pass it, and one
corrupted address or size per memory kind (DRAM through an operand and through a descriptor field,
each scratchpad, the accumulator) fails it with an error naming the row, its opcode, the operand or
field and its value, and the memory and its size."""
import dataclasses
import re

import numpy as np
import pytest

import dse
from compiler.errors import CompileError, ProgramError
from compiler.pipeline import compile_graph
from compiler.program import ADDRESS_MEMORY, CONV, DESC, MATRIX_ACC, OPCODE_ID, OPCODES, OPERAND
from compiler.program_bounds import ACCESSES
from compiler.spec import load
from compiler.targets import lower
from dse import zoo
from tests.quant_models import quant_model_path

SMALL = {"array": {"rows": 8, "cols": 8}}


@pytest.fixture(scope="module")
def cnn():
    return dse.compile(zoo.small_cnn(), SMALL)


@pytest.fixture(scope="module")
def int8_mlp():
    return lower(compile_graph(quant_model_path("mlp")), load("hwspecs/systolic_int8.yaml"))


def _copy(program):
    """A Program whose instruction and descriptor tables may be corrupted without touching `program`."""
    ins = dataclasses.replace(program.instructions, opcode=program.instructions.opcode.copy(),
                              operands=program.instructions.operands.copy(),
                              engine=program.instructions.engine.copy())
    return dataclasses.replace(program, instructions=ins, desc_int=program.desc_int.copy(), _image=None)


def _first(program, op: str) -> int:
    return int(np.flatnonzero(program.instructions.opcode == OPCODE_ID[op])[0])


def _set(program, op: str, operand: str, value: int, row: int | None = None) -> int:
    """Corrupt one operand of the first `op` row (or of `row`); the row."""
    row = _first(program, op) if row is None else row
    program.instructions.operands[row, getattr(OPERAND[op], operand)] = value
    return row


def _fails(program, *parts: str) -> str:
    """verify()'s one-line error, which must hold each of `parts` (literal text)."""
    with pytest.raises(ProgramError) as info:
        program.verify()
    text = str(info.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    return text


@pytest.mark.parametrize("model", ["mlp", "small_cnn"])
def test_project_models_pass_verify(model):
    program = dse.compile(zoo.resolve(f"zoo:{model}"), SMALL)
    assert program.verify() is program


@pytest.mark.parametrize("options", [("qdq", False), ("qoperator", True)])
def test_int8_mlp_passes_verify(options):
    program = lower(compile_graph(quant_model_path("mlp", *options)), load("hwspecs/systolic_int8.yaml"))
    assert program.verify() is program


def test_a_verify_error_is_a_compile_error():
    assert issubclass(ProgramError, CompileError)


def test_dram_operand_past_its_region(cnn):
    p = _copy(cnn)
    region = next(r for r in p.regions.values() if r.name.endswith("::gemm_weights"))
    row = _first(p, "load_weights")
    p.instructions.operands[row, OPERAND["load_weights"].src] = region.offset + region.nbytes - 4   # one element short
    _fails(p, f"row {row} load_weights: operand src={region.offset + region.nbytes - 4} addresses DRAM bytes",
           f"overrunning region '{region.name}' (bytes [{region.offset}, {region.offset + region.nbytes}))")


def test_dram_operand_past_the_image(cnn):
    p = _copy(cnn)
    row = _set(p, "load_weights", "src", p.dram_size)
    _fails(p, f"row {row} load_weights: operand src={p.dram_size} addresses DRAM bytes [{p.dram_size}, ",
           f"outside its {p.dram_size} bytes")


def test_misaligned_dram_operand(cnn):
    p = _copy(cnn)
    row = _first(p, "load_weights")
    p.instructions.operands[row, OPERAND["load_weights"].src] += 1
    _fails(p, f"row {row} load_weights: operand src=", "is not a multiple of its elements' 4 bytes in DRAM")


def test_dram_descriptor_field(cnn):
    p = _copy(cnn)
    row = _first(p, "store_tile")
    desc = int(p.instructions.operands[row, OPERAND["store_tile"].desc])
    p.desc_int[desc, CONV.out] = p.dram_size - 64
    _fails(p, f"row {row} store_tile: descriptor {desc} field out={p.dram_size - 64} addresses DRAM",
           f"outside its {p.dram_size} bytes")


def test_vector_descriptor_field_names_the_row(cnn):
    p = _copy(cnn)
    row = _first(p, "vec_maxpool")
    desc = int(p.instructions.operands[row, OPERAND["vec_maxpool"].desc])
    p.desc_int[desc, DESC["vec_maxpool"].dst] = -64
    _fails(p, f"row {row} vec_maxpool: descriptor {desc} field dst=-64 addresses DRAM bytes [-64, ",
           f"outside its {p.dram_size} bytes")


@pytest.mark.parametrize("op, operand, memory", [
    ("load_im2col", "dst", "input_scratchpad"), ("matmul", "a", "input_scratchpad"),
    ("load_weights", "dst", "weight_scratchpad"), ("matmul", "w", "weight_scratchpad"),
    ("load_bias", "dst", "accumulator"), ("matmul", "acc", "accumulator"), ("store_tile", "acc", "accumulator")])
def test_onchip_operand_past_its_memory(cnn, op, operand, memory):
    p = _copy(cnn)
    size = p.memory(memory).nbytes
    row = _set(p, op, operand, size - 4)        # the tile starts inside and runs past the end
    _fails(p, f"row {row} {op}: operand {operand}={size - 4} addresses {memory} bytes [{size - 4}, ",
           f"outside its {size} bytes")


def test_tile_past_the_layer(cnn):
    p = _copy(cnn)
    row = _first(p, "store_tile")
    desc = p.desc_int[p.instructions.operands[row, OPERAND["store_tile"].desc]]
    pixels = int(desc[CONV.n] * desc[CONV.oh] * desc[CONV.ow])
    _set(p, "store_tile", "m0", pixels, row)
    _fails(p, f"row {row} store_tile: m0+tm=", f"lies outside [0, {pixels}] (n*oh*ow of descriptor")


def test_negative_size(cnn):
    p = _copy(cnn)
    row = _set(p, "matmul", "tk", -1)
    _fails(p, f"row {row} matmul: operand tk=-1 is negative")


def test_unknown_opcode(cnn):
    p = _copy(cnn)
    p.instructions.opcode[5] = 99
    _fails(p, f"row 5 has unknown opcode 99 (opcodes are 0..{len(OPCODES) - 1}: load_im2col, ")


def test_engine_outside_the_programs_engines(cnn):
    p = _copy(cnn)
    p.instructions.engine[3] = len(p.engines)
    _fails(p, "row 3 ", f"names engine {len(p.engines)} (the program declares {len(p.engines)}: dma_load, ")


def test_descriptor_index_and_element_type(cnn):
    p = _copy(cnn)
    row = _set(p, "store_tile", "desc", len(p.desc_int))
    _fails(p, f"row {row} store_tile: operand desc={len(p.desc_int)} names no descriptor")
    p = _copy(cnn)
    row = _set(p, "load_weights", "src_dtype", 42)
    _fails(p, f"row {row} load_weights: operand src_dtype=42 is no element type")


def test_undeclared_memory(cnn):
    p = dataclasses.replace(_copy(cnn), memories=cnn.memories[:MATRIX_ACC])     # no accumulator
    _fails(p, f"row {_first(p, 'load_bias')} load_bias: it addresses memory {MATRIX_ACC}, which the program does "
           "not declare (it declares 0 (dram), 1 (input_scratchpad), 2 (weight_scratchpad))")


def test_malformed_memory_table(cnn):
    p = dataclasses.replace(_copy(cnn), memories=(cnn.memories[0], cnn.memories[2]))
    _fails(p, "memory 1 is Memory(id=2, name='weight_scratchpad'", "memory i has id i")
    p = dataclasses.replace(_copy(cnn), memories=(cnn.memories[0], dataclasses.replace(cnn.memories[1], dtype=None)))
    _fails(p, "memory 1 is Memory(id=1, name='input_scratchpad'")


def test_every_address_has_a_memory_and_a_bounds_check():
    """ADDRESS_MEMORY names the memory of each address operand and of the descriptor's addresses; ACCESSES
    bounds-checks exactly those addresses."""
    for op, (_, names) in OPCODES.items():
        checked = {address.partition(".")[0] for address, _, _ in ACCESSES[op]}
        assert checked == set(ADDRESS_MEMORY[op]._fields), op
        assert all(a in names for a in ADDRESS_MEMORY[op]._fields), op


def test_integer_layer_fields(int8_mlp):
    p = _copy(int8_mlp)
    row = _first(p, "store_tile")
    desc = int(p.instructions.operands[row, OPERAND["store_tile"].desc])
    scale = int(p.desc_int[desc, CONV.scale])
    region = next(r for r in p.regions.values() if r.offset == scale)
    p.desc_int[desc, CONV.scale] = scale + 4
    _fails(p, f"row {row} store_tile: descriptor {desc} field scale={scale + 4}", f"overrunning region '{region.name}'")
    p = _copy(int8_mlp)
    row = _first(p, "matmul")
    desc = int(p.instructions.operands[row, OPERAND["matmul"].desc])
    p.desc_int[desc, CONV.w_zp] = p.dram_size
    text = _fails(p, f"descriptor {desc} field w_zp={p.dram_size} addresses DRAM")
    assert re.search(r"row \d+ matmul:", text)


def test_the_compiled_screen_and_the_worded_check_agree(cnn, int8_mlp):
    """Random single corruptions of an operand or a descriptor field: verify passes, or its error
    words what the compiled pass found (never the fallback that says the two disagree)."""
    rng = np.random.default_rng(0)
    for program in (cnn, int8_mlp):
        values = [-1, 0, 1, 3, 64, program.dram_size - 4, program.dram_size, 2 ** 40, -2 ** 62,
                  *(m.nbytes for m in program.memories[1:])]
        for _ in range(300):
            p = _copy(program)
            table = p.instructions.operands if rng.random() < 0.7 else p.desc_int
            row, col = rng.integers(len(table)), rng.integers(table.shape[1])
            table[row, col] = values[rng.integers(len(values))]
            try:
                p.verify()
            except ProgramError as exc:
                assert "fails the bounds check" not in str(exc), str(exc)
