"""Timing and bytes of 16-bit datapaths: for the same tiling a bf16 spec moves half the DRAM
bytes of fp32 (the fp32 biases and accumulator excepted), its scratchpads hold twice the
elements so the tile search may pick larger tiles, and fp16 times exactly like bf16."""
import numpy as np
import pytest

import dse
from compiler.program import DTYPE_CODE, OPCODE_ID, OPERAND
from compiler.targets.systolic.tile_loops import OperandTypes, emit_gemm
from compiler.targets.systolic.tiling import Tiling

BF16 = OperandTypes(x="bf16", input="bf16", weight="bf16", bias="fp32", accumulator="fp32", output="bf16")


def test_same_tiling_moves_half_the_bytes():
    geom = (9, 14, 14, 1, 3, 16, 16)                         # 3x3 conv, 16x16 input, 14x14 output
    m, k, n = 2 * 14 * 14, 8 * 9, 24
    layer = dict(base=0, layer=0, tiling=Tiling(64, 36, 16, 2, "n_outer", 0), slot_bytes=(8192, 8192, 8192),
                 geom=geom, m=m, k=k, n=n, groups=1, desc0=0, w_addr=4096, bias_addr=64, input_ready=-1)
    fp32, bf16 = emit_gemm(**layer), emit_gemm(**layer, types=BF16)
    assert np.array_equal(fp32.opcode, bf16.opcode) and np.array_equal(fp32.dep_idx, bf16.dep_idx)
    op = fp32.opcode
    halved = np.isin(op, [OPCODE_ID["load_im2col"], OPCODE_ID["load_weights"], OPCODE_ID["store_tile"]])
    assert np.array_equal(bf16.dram_bytes[halved] * 2, fp32.dram_bytes[halved])
    bias = op == OPCODE_ID["load_bias"]
    assert np.array_equal(bf16.dram_bytes[bias], fp32.dram_bytes[bias])         # fp32 biases
    loads = np.isin(op, [OPCODE_ID["load_im2col"], OPCODE_ID["load_weights"]])
    assert np.array_equal(bf16.onchip_bytes[loads] * 2, fp32.onchip_bytes[loads])
    acc_side = np.isin(op, [OPCODE_ID["load_bias"], OPCODE_ID["store_tile"]])   # the fp32 accumulator
    assert np.array_equal(bf16.onchip_bytes[acc_side], fp32.onchip_bytes[acc_side])
    mm = op == OPCODE_ID["matmul"]
    tm, tk, tn = (bf16.operands[mm, getattr(OPERAND["matmul"], name)] for name in ("tm", "tk", "tn"))
    assert np.array_equal(bf16.onchip_bytes[mm], 2 * (tm * tk + tk * tn) + 8 * tm * tn)
    # the DMA rows name the element type of the DRAM data they move
    assert set(bf16.operands[op == OPCODE_ID["load_im2col"], OPERAND["load_im2col"].src_dtype]) == {DTYPE_CODE["bf16"]}
    assert set(bf16.operands[op == OPCODE_ID["store_tile"], OPERAND["store_tile"].dst_dtype]) == {DTYPE_CODE["bf16"]}
    assert set(bf16.operands[bias, OPERAND["load_bias"].src_dtype]) == {DTYPE_CODE["fp32"]}


def _tiles(program) -> dict:
    """layer name -> (tm, tk, tn, buffers) of every GEMM layer."""
    return {layer.name: (*(layer.mapping.tile[d] for d in "mkn"), layer.mapping.extras["buffers"])
            for layer in program.layers if layer.mapping.unit == "matrix"}


def _run(dtype: str, kib: int = 32):
    hw = {"datatypes": {"input": dtype, "weight": dtype, "output": dtype},
          "memory": {"input_scratchpad_kib": kib, "weight_scratchpad_kib": kib}}
    return dse.run("zoo:resnet50", hw=hw, timing_only=True)


@pytest.fixture(scope="module")
def resnet():
    return {dtype: _run(dtype) for dtype in ("fp32", "bf16", "fp16")}


def test_resnet50_bf16_dram_bytes_and_tiles(resnet):
    fp32, bf16 = resnet["fp32"], resnet["bf16"]
    t32, t16 = _tiles(fp32.program), _tiles(bf16.program)
    ins32, ins16 = fp32.program.instructions, bf16.program.instructions
    names = [layer.name for layer in fp32.program.layers]
    moved = [OPCODE_ID[o] for o in ("load_im2col", "load_weights", "store_tile")]
    same = 0
    for index, name in enumerate(names):
        rows32, rows16 = ins32.layer == index, ins16.layer == index
        if name not in t32:      # vector-unit layers stream their operands: exactly half
            assert ins16.dram_bytes[rows16].sum() * 2 == ins32.dram_bytes[rows32].sum(), name
        elif t32[name] == t16[name]:
            same += 1
            sel32, sel16 = rows32 & np.isin(ins32.opcode, moved), rows16 & np.isin(ins16.opcode, moved)
            assert ins16.dram_bytes[sel16].sum() * 2 == ins32.dram_bytes[sel32].sum(), name
    assert same >= 1      # bf16 mostly takes larger tiles; test_same_tiling_moves_half_the_bytes forces equal ones
    # the scratchpads hold twice the elements: every bf16 tile fits in 2-byte elements, and
    # some layers take a tile an fp32 spec could not hold
    budget = 32 * 1024
    for tm, tk, tn, buffers in t16.values():
        assert tm * tk * 2 * buffers <= budget and tk * tn * 2 * buffers <= budget
    assert any(tm * tk * 4 * b > budget or tk * tn * 4 * b > budget for tm, tk, tn, b in t16.values())
    s32, s16 = fp32.stats, bf16.stats
    assert s16.bytes["dram"] < 0.55 * s32.bytes["dram"]
    assert s16.total_cycles < s32.total_cycles                     # this point is DRAM-bound
    assert s16.energy_by_component_j["dram"] < 0.55 * s32.energy_by_component_j["dram"]
    assert s16.energy_by_component_j["pe_array"] < s32.energy_by_component_j["pe_array"]


def test_fp16_times_like_bf16(resnet):
    bf16, fp16 = resnet["bf16"].stats, resnet["fp16"].stats
    assert fp16.total_cycles == bf16.total_cycles and fp16.bytes == bf16.bytes
    assert fp16.energy_j != bf16.energy_j                          # priced by the type's own multiplier
