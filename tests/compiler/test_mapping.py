"""The mapping is data (compiler/mapping.py): it agrees with the Program's own tile loops,
round-trips through JSON, is the same on every compile, and is printed by `dse compile
--mapping`, stored per layer in stats.json and per evaluation in the explorer's store."""
import itertools
import json
import math

import numpy as np
import pytest
from onnx import helper, numpy_helper

import dse
from compiler.errors import SpecError
from compiler.mapping import Mapping
from compiler.program import OPCODE_ID, OPCODES, OPERAND
from dse.cli import main

DATAFLOWS = ("weight_stationary", "output_stationary", "input_stationary")
# small memories: several tiles per dimension, edge tiles, single and double buffering
SMALL = {"input_scratchpad_kib": 2, "weight_scratchpad_kib": 2, "accumulator_kib": 1}


def grouped_conv(groups=2, cin=8, cout=12, hw=9):
    w = np.random.default_rng(0).standard_normal((cout, cin // groups, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1], group=groups)
    graph = helper.make_graph([node, helper.make_node("Relu", ["y"], ["z"], name="relu")], "g",
                              [helper.make_tensor_value_info("x", 1, [1, cin, hw, hw])],
                              [helper.make_tensor_value_info("z", 1, None)], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _programs():
    for dataflow in DATAFLOWS:
        hw = {"array": {"rows": 4, "cols": 8, "dataflow": dataflow}, "memory": SMALL}
        yield dataflow, dse.compile(grouped_conv(), hw)
        yield dataflow, dse.compile("zoo:small_cnn", hw)
    yield "default", dse.compile("zoo:mlp")


PROGRAMS = list(_programs())


def _rows(program, li, opcode):
    ins = program.instructions
    return ins.operands[(ins.layer == li) & (ins.opcode == OPCODE_ID[opcode])]


@pytest.mark.parametrize("where,program", PROGRAMS, ids=[f"{w}-{i}" for i, (w, _) in enumerate(PROGRAMS)])
def test_the_mapping_agrees_with_the_programs_tile_loops(where, program):
    names = OPCODES["matmul"][1]
    tm, tk, tn, desc = (names.index(n) for n in ("tm", "tk", "tn", "desc"))
    gemm_layers = 0
    for li, layer in enumerate(program.layers):
        m = layer.mapping
        if layer.op not in ("conv", "gemm"):
            assert m == Mapping("vector") and not len(_rows(program, li, "matmul"))
            continue
        gemm_layers += 1
        matmuls = _rows(program, li, "matmul")
        assert m.unit == "matrix" and m.dataflow == program.spec.array.dataflow
        # the largest tile of each dimension is the mapping's tile size; edge tiles are smaller
        assert {"m": matmuls[:, tm].max(), "k": matmuls[:, tk].max(), "n": matmuls[:, tn].max()} == \
            {d: m.tile[d] for d in "mkn"}
        assert len(matmuls) == math.prod(m.tiles.values())
        assert m.tiles == {d: -(-m.dims[d] // m.tile[d]) for d in m.dims}
        # the MACs the matmuls do are the layer's M x K x N per group
        assert int((matmuls[:, tm] * matmuls[:, tk] * matmuls[:, tn]).sum()) == layer.macs == \
            math.prod(m.dims.values())
        assert len(np.unique(matmuls[:, desc])) == m.dims["g"]
        # the output tiles are stored in the mapping's loop order (outermost first, k innermost)
        assert m.loop_order[0] == "g" and m.loop_order[-1] == "k"
        stores = _rows(program, li, "store_tile")
        st = OPERAND["store_tile"]
        found = [(int(s[st.desc]), int(s[st.m0]), int(s[st.n0])) for s in stores]
        outer = [d for d in m.loop_order if d != "k"]
        expected = []
        for index in itertools.product(*(range(m.tiles[d]) for d in outer)):
            at = dict(zip(outer, index))
            expected.append((found[0][0] + at["g"], at["m"] * m.tile["m"], at["n"] * m.tile["n"]))
        assert found == expected
        assert m.extras["buffers"] in (1, 2) and m.extras["est_cycles"] > 0
    assert gemm_layers


def test_small_memories_make_several_tiles_and_both_loop_orders():
    mappings = [layer.mapping for _, p in PROGRAMS for layer in p.layers if layer.mapping.unit == "matrix"]
    assert any(math.prod(m.tiles.values()) > 1 and m.tiles["k"] > 1 for m in mappings)
    assert any(m.dims["g"] > 1 for m in mappings)
    assert {m.loop_order for m in mappings} == {("g", "n", "m", "k"), ("g", "m", "n", "k")}
    assert {m.extras["buffers"] for m in mappings} == {1, 2}


def test_round_trip_through_json():
    for _, program in PROGRAMS:
        for layer in program.layers:
            data = json.loads(json.dumps(layer.mapping.to_dict()))
            assert Mapping.from_dict(data) == layer.mapping
            assert data["tiles"] == layer.mapping.tiles
    with pytest.raises(ValueError, match="unknown keys.*tiling"):
        Mapping.from_dict({"unit": "matrix", "tiling": {}})


def test_text_keeps_what_the_old_string_told():
    fc0 = dse.compile("zoo:mlp").layers[0].mapping
    text = fc0.text()
    assert text.startswith("matrix weight_stationary M1 K784 N256 G1 tile m1 k784 n")
    for word in ("tiles", "order g>", "buffers=", "est_cycles="):
        assert word in text
    assert Mapping("vector").text() == "vector"


def test_the_same_design_point_gives_the_same_mappings():
    hw = {"array": {"rows": 4, "cols": 8}, "memory": SMALL}
    first = [layer.mapping for layer in dse.compile("zoo:small_cnn", hw).layers]
    assert first == [layer.mapping for layer in dse.compile("zoo:small_cnn", hw).layers]


def test_dse_compile_mapping_prints_one_row_per_layer(capsys):
    assert main(["compile", "zoo:mlp", "--mapping"]) == 0
    out = capsys.readouterr().out
    program = dse.compile("zoo:mlp")
    lines = out.splitlines()
    assert lines[0].split() == ["layer", "name", "op", "unit", "dataflow", "shape", "tile", "tiles", "order",
                                "extras"]
    for i, layer in enumerate(program.layers):
        row = lines[1 + i].split()
        assert row[:4] == [str(i), layer.name, layer.op, layer.mapping.unit]
        if layer.mapping.unit == "matrix":
            assert row[4] == "weight_stationary" and " ".join(f"{d}{v}" for d, v in layer.mapping.tile.items()) \
                in lines[1 + i]
    assert "outermost first" in out and "load_weights" not in out   # the table, not the Program
    assert main(["compile", "zoo:mlp"]) == 0
    assert "layer 0 fc0 (gemm) macs=200704 matrix weight_stationary M1 K784" in capsys.readouterr().out


def test_stats_json_holds_each_layers_mapping(tmp_path, capsys):
    assert main(["run", "zoo:small_cnn", "--timing-only", "--out", str(tmp_path)]) == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    program = dse.compile("zoo:small_cnn")
    mappings = {layer.name: layer.mapping for layer in program.layers}
    assert stats["layers"] and "layer.mapping" in stats["definitions"]
    for layer in stats["layers"]:
        assert Mapping.from_dict(layer["mapping"]) == mappings[layer["name"]]


def test_the_store_keeps_the_mapping_behind_every_evaluations_cycles(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\nworkloads: [zoo:mlp]\narray: {cols: 4}\nsweep:\n  parameters:\n"
                    "    array.rows: [4, 8]\n    memory.weight_scratchpad_kib: [0.01, 64]\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "rep"), "--workers", "1"]) == 0
    df = dse.load(tmp_path / "rep")
    assert len(df) == 4
    for _, row in df.iterrows():
        layers = dse.layer_mappings(tmp_path / "rep", row["key"])
        if not row["feasible"]:
            assert layers is None
            continue
        hw = {"array": {"rows": int(row["array.rows"]), "cols": 4},
              "memory": {"weight_scratchpad_kib": float(row["memory.weight_scratchpad_kib"])}}
        run = dse.run("zoo:mlp", hw=hw, timing_only=True)
        assert [(l["name"], l["op"], l["cycles"], l["mapping"]) for l in layers] == \
            [(l.name, l.op, s["cycles"], l.mapping) for l, s in zip(run.program.layers, run.stats.layers)]
        assert max(l["cycles"] for l in layers) <= row["total_cycles"]
    with pytest.raises(SpecError, match="no sweep results"):
        dse.layer_mappings(tmp_path / "nowhere", "key")
