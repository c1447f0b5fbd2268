"""The GEMM tile-loop emitter (compiler/targets/systolic/tile_loops.py) against an independent
reading of its contract. A small interpreter walks the emitted rows, tracks what each
buffer slot holds, and checks that output tiles come in the chosen loop order, every
matmul reads the A and W tiles its output tile needs at that K step, no tile is loaded
again while it is still resident, every dependency is exactly the hazard the row must
wait for, and work and bytes add up to what the GEMM shape implies."""
import itertools
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from compiler import spec as specmod
from compiler.targets.systolic.spec import SystolicSpec
from compiler.errors import CompileError
from compiler.pipeline import compile_graph
from compiler.program import OPCODE_ID, OPCODE_NAMES, OPCODES
from compiler.targets import lower
from compiler.targets.systolic.tile_loops import emit_gemm
from compiler.targets.systolic.tiling import BYTES, Tiling, im2col_read_bytes
from dse import zoo

GEMM_GEOM = (1, 1, 1, 1, 1, 1, 1)   # a plain GEMM: each output row reads its own input row


@st.composite
def gemm_layers(draw):
    if draw(st.booleans()):      # a conv: M = images x output pixels, K = channels x taps
        kh, sh, dh = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        oh, ow, images, cin = (draw(st.integers(1, 9)) for _ in range(4))
        h = (oh - 1) * sh + (kh - 1) * dh + 1
        geom = (kh * kh, oh, ow, sh, (kh - 1) * dh + 1, h, draw(st.integers(ow, ow + 8)))
        m, k = images * oh * ow, cin * kh * kh
    else:
        geom, m, k = GEMM_GEOM, draw(st.integers(1, 200)), draw(st.integers(1, 200))
    n = draw(st.integers(1, 150))
    # up to 12 x 8 x 8 tiles, so an example stays small
    t = Tiling(draw(st.integers(-(-m // 12), m)), draw(st.integers(-(-k // 8), k)), draw(st.integers(-(-n // 8), n)),
               draw(st.sampled_from([1, 2])), draw(st.sampled_from(["n_outer", "m_outer"])), 0)
    # each slot holds its tile, with some slack so slot addresses are not just tile sizes
    slot_bytes = tuple((size + draw(st.integers(0, 64))) * BYTES for size in (t.tm * t.tk, t.tk * t.tn, t.tm * t.tn))
    base = draw(st.integers(0, 1000))
    return dict(base=base, layer=draw(st.integers(0, 5)), tiling=t, slot_bytes=slot_bytes,
                geom=geom, m=m, k=k, n=n, groups=draw(st.integers(1, 3)), desc0=draw(st.integers(0, 9)),
                w_addr=4096, bias_addr=draw(st.sampled_from([-1, 64])), input_ready=draw(st.integers(-1, base - 1)))


def output_tiles(t: Tiling, m: int, n: int, groups: int) -> list:
    """(group, m0, n0) of every output tile, in the tiling's loop order."""
    m_tiles, n_tiles = range(0, m, t.tm), range(0, n, t.tn)
    pairs = (list(itertools.product(m_tiles, n_tiles)) if t.order == "m_outer"
             else [(m0, n0) for n0, m0 in itertools.product(n_tiles, m_tiles)])
    return [(g, m0, n0) for g in range(groups) for m0, n0 in pairs]


def hazards(*rows) -> list:
    """The dependency list a row must carry: the rows it waits for (None, -1: nothing), sorted."""
    return sorted({d for d in rows if d is not None and d >= 0})


def check_block(block, base, layer, tiling, slot_bytes, geom, m, k, n, groups, desc0, w_addr, bias_addr,
                input_ready):
    t = tiling
    a_bytes, w_bytes, acc_bytes = slot_bytes
    # buffer -> its slot addresses, in the round-robin order loads take them (double buffering)
    slots = {"a": [s * a_bytes for s in range(t.buffers)], "w": [s * w_bytes for s in range(t.buffers)],
             "acc": [s * acc_bytes for s in range(t.buffers)]}
    content = {}                       # (buffer, slot address) -> tile key it holds
    writer, reader = {}, {}            # (buffer, slot address) -> last row writing / reading it
    last_key = {}                      # buffer -> key of the last tile loaded there (this group)
    todo = output_tiles(t, m, n, groups)
    loads = {"a": 0, "w": 0, "acc": 0}
    totals = {"work": 0, "a_dram": 0, "w_dram": 0, "bias_dram": 0, "store_dram": 0}
    tile = None                        # (g, m0, n0, next k0, acc slot)

    def next_slot(buffer):
        loads[buffer] += 1
        return slots[buffer][(loads[buffer] - 1) % t.buffers]

    assert (block.layer == layer).all()
    for r in range(len(block)):
        row = base + r
        op = int(block.opcode[r])
        o = SimpleNamespace(**dict(zip(OPCODES[OPCODE_NAMES[op]][1], (int(v) for v in block.operands[r]))))
        deps = [int(d) for d in block.dep_idx[block.dep_ptr[r]:block.dep_ptr[r + 1]]]
        assert deps == sorted(set(deps)) and all(0 <= d < row for d in deps)

        if op == OPCODE_ID["load_bias"]:
            assert tile is None or tile[3] == k
            g, m0, n0 = todo.pop(0)
            if tile is None or tile[0] != g:         # a new group reuses nothing the last one loaded
                last_key.clear()
            src, tm, tn, acc = o.src, o.tm, o.tn, o.dst
            assert (tm, tn) == (min(t.tm, m - m0), min(t.tn, n - n0)) and acc == next_slot("acc")
            assert src == (bias_addr + (g * n + n0) * BYTES if bias_addr >= 0 else -1)
            assert deps == hazards(reader.get(("acc", acc))), (r, deps)
            writer[("acc", acc)] = row
            tile = (g, m0, n0, 0, acc)
            totals["bias_dram"] += int(block.dram_bytes[r])
        elif op == OPCODE_ID["load_im2col"]:
            desc, m0, tm, k0, tk, dst = o.desc, o.m0, o.tm, o.k0, o.tk, o.dst
            key = (tile[0], m0, k0, tm, tk)
            assert desc == desc0 + tile[0] and dst == next_slot("a") and key != last_key.get("a")
            assert deps == hazards(reader.get(("a", dst)), input_ready), (r, deps)
            content[("a", dst)], writer[("a", dst)], last_key["a"] = key, row, key
            assert int(block.dram_bytes[r]) == int(im2col_read_bytes(geom, m0, tm, k0, tk)) <= tm * tk * BYTES
            totals["a_dram"] += int(block.dram_bytes[r])
        elif op == OPCODE_ID["load_weights"]:
            src, tk, tn, row_elems, dst = o.src, o.tk, o.tn, o.src_row_elems, o.dst
            k0, n0 = divmod((src - w_addr) // BYTES - tile[0] * k * n, n)
            key = (tile[0], k0, n0, tk, tn)
            assert row_elems == n and dst == next_slot("w") and key != last_key.get("w")
            assert deps == hazards(reader.get(("w", dst))), (r, deps)
            content[("w", dst)], writer[("w", dst)], last_key["w"] = key, row, key
            totals["w_dram"] += int(block.dram_bytes[r])
        elif op == OPCODE_ID["matmul"]:
            a, w, acc, tm, tk, tn = o.a, o.w, o.acc, o.tm, o.tk, o.tn
            g, m0, n0, k0, acc_slot = tile
            assert acc == acc_slot and (tm, tk, tn) == (min(t.tm, m - m0), min(t.tk, k - k0), min(t.tn, n - n0))
            assert content[("a", a)] == (g, m0, k0, tm, tk) and content[("w", w)] == (g, k0, n0, tk, tn)
            assert deps == hazards(writer[("a", a)], writer[("w", w)], writer[("acc", acc)]), (r, deps)
            writer[("acc", acc)] = reader[("a", a)] = reader[("w", w)] = row
            tile = (g, m0, n0, k0 + tk, acc_slot)
            assert int(block.work[r]) == tm * tk * tn
            totals["work"] += tm * tk * tn
        elif op == OPCODE_ID["store_tile"]:
            desc, acc, m0, tm, n0, tn = o.desc, o.acc, o.m0, o.tm, o.n0, o.tn
            g, tm0, tn0, k0, acc_slot = tile
            assert k0 == k and (desc, acc, m0, n0) == (desc0 + g, acc_slot, tm0, tn0)
            assert deps == hazards(writer[("acc", acc)]), (r, deps)
            reader[("acc", acc)] = row
            totals["store_dram"] += int(block.dram_bytes[r])
        else:
            pytest.fail(f"row {r}: unexpected opcode {op}")
    assert not todo and int(block.opcode[-1]) == OPCODE_ID["store_tile"]
    return loads, totals


@settings(max_examples=150, deadline=None)
@given(gemm_layers())
def test_tile_loops_follow_the_loop_order_and_their_hazards(layer):
    block = emit_gemm(**layer)
    loads, totals = check_block(block, **layer)
    t, m, k, n, groups = layer["tiling"], layer["m"], layer["k"], layer["n"], layer["groups"]
    nm, nk, nn = -(-m // t.tm), -(-k // t.tk), -(-n // t.tn)
    assert totals["work"] == groups * m * k * n
    assert totals["store_dram"] == groups * m * n * BYTES
    assert totals["bias_dram"] == (groups * nm * n * BYTES if layer["bias_addr"] >= 0 else 0)
    # A tile stays resident only while consecutive output tiles need the same one: with one K
    # step, along the inner loop (m_outer keeps A across n tiles, n_outer keeps W across m tiles).
    a_passes = 1 if nk == 1 and (t.order == "m_outer" or nm == 1) else nn
    w_passes = 1 if nk == 1 and (t.order == "n_outer" or nn == 1) else nm
    assert loads["a"] == groups * nm * nk * a_passes and loads["w"] == groups * nn * nk * w_passes
    assert totals["w_dram"] == groups * w_passes * k * n * BYTES
    if layer["geom"] == GEMM_GEOM:
        assert totals["a_dram"] == groups * a_passes * m * k * BYTES


@settings(max_examples=25, deadline=None)
@given(model=st.sampled_from(["zoo:small_cnn", "zoo:mlp"]), rows=st.sampled_from([2, 4, 8, 16, 32]),
       cols=st.sampled_from([2, 4, 8, 16, 32]),
       dataflow=st.sampled_from(["weight_stationary", "output_stationary", "input_stationary"]),
       kib=st.sampled_from([1, 2, 8, 64]), double_buffer=st.booleans())
def test_lowered_layers_do_each_mac_once(model, rows, cols, dataflow, kib, double_buffer):
    spec = SystolicSpec()
    for path, value in {"array.rows": rows, "array.cols": cols, "array.dataflow": dataflow,
                        "memory.input_scratchpad_kib": kib, "memory.weight_scratchpad_kib": kib,
                        "memory.accumulator_kib": kib, "memory.double_buffer": double_buffer}.items():
        spec = specmod.replace_path(spec, path, value)
    graph = compile_graph(zoo.resolve(model))
    try:
        program = lower(graph, spec)
    except CompileError:
        assume(False)
    ins = program.instructions
    matmul, store = ins.opcode == OPCODE_ID["matmul"], ins.opcode == OPCODE_ID["store_tile"]
    nodes = {node.name: node for node in graph.nodes}
    for index, layer in enumerate(program.layers):
        rows_of_layer = ins.layer == index
        assert int(ins.work[matmul & rows_of_layer].sum()) == layer.macs
        if layer.op in ("conv", "gemm"):
            out = graph.tensors[nodes[layer.name].outputs[0]]
            assert int(ins.dram_bytes[store & rows_of_layer].sum()) == out.size * BYTES
