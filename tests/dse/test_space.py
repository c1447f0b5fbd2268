"""The sweep section: values, ranges, derived fields, constraints, objectives, and errors."""
import pytest

from compiler.errors import SpecError
from compiler.targets.systolic.spec import SystolicSpec
from dse import space as spacemod

BASE = SystolicSpec()


def parse(**raw):
    return spacemod.parse(BASE, raw)


def test_lists_ranges_and_choices_expand_to_ordered_values():
    space = parse(parameters={
        "array.rows": [8, 16],
        "array.cols": {"min": 16, "max": 64, "step": 16},
        "memory.input_scratchpad_kib": {"min": 32, "max": 1024, "factor": 2},
        "clock_ghz": {"min": 0.5, "max": 2.0, "num": 4},
        "array.dataflow": {"choices": ["weight_stationary", "output_stationary"]},
    })
    assert space.parameters["array.cols"] == [16, 32, 48, 64]
    assert space.parameters["memory.input_scratchpad_kib"] == [32, 64, 128, 256, 512, 1024]
    assert space.parameters["clock_ghz"] == [0.5, 1.0, 1.5, 2.0]
    assert space.size == 2 * 4 * 6 * 4 * 2
    point = space.point((1, 0, 2, 3, 1))
    assert point == {"array.rows": 16, "array.cols": 16, "memory.input_scratchpad_kib": 128, "clock_ghz": 2.0,
                     "array.dataflow": "output_stationary"}
    spec = space.spec_of(point)
    assert spec.array.rows == 16 and spec.clock_ghz == 2.0 and spec.memory.input_scratchpad_kib == 128


def test_derived_fields_follow_the_point_and_int_fields_stay_int():
    space = parse(parameters={"array.rows": [8, 32]}, derived={"array.cols": "array.rows * 2",
                                                               "memory.accumulator_kib": "array.rows / 2"})
    spec = space.spec_of({"array.rows": 32})
    assert spec.array.cols == 64 and isinstance(spec.array.cols, int)
    assert spec.memory.accumulator_kib == 16.0


def test_constraints_split_into_parameter_and_result_checks():
    space = parse(parameters={"array.rows": [8, 256]},
                  constraints=["array.rows * array.cols <= 4096", "area_mm2 <= 20 and power_w < 5"])
    assert len(space.point_constraints) == 1 and len(space.result_constraints) == 1
    assert space.violated(space.spec_of({"array.rows": 8})) == ""
    assert "array.rows * array.cols <= 4096" in space.violated(space.spec_of({"array.rows": 256}))
    assert space.violated_by_results({"area_mm2": 10, "power_w": 1}) == ""
    assert "area_mm2" in space.violated_by_results({"area_mm2": 30, "power_w": 1})


def test_objectives_accept_aliases_and_directions():
    space = parse(objectives=["latency", {"throughput": "max"}, "area_mm2"])
    assert [(o.name, o.direction) for o in space.objectives] == [
        ("latency_s", "min"), ("throughput_inf_s", "max"), ("area_mm2", "min")]
    assert [o.sign for o in space.objectives] == [1.0, -1.0, 1.0]
    assert [o.name for o in parse().objectives] == list(spacemod.DEFAULT_OBJECTIVES)


@pytest.mark.parametrize("raw, expected", [
    ({"parameters": {"array.rowz": [8]}}, "array.rowz"),
    ({"parameters": {"array.rows": [0, 8]}}, "sweep.parameters.array.rows"),
    ({"parameters": {"array.dataflow": ["diagonal"]}}, "allowed: weight_stationary"),
    ({"parameters": {"array.rows": {"min": 8, "max": 4}}}, "min <= max"),
    ({"parameters": {"array.rows": {"min": 8, "max": 64}}}, "exactly one of 'step'"),
    ({"parameters": {"array.rows": {"min": 8, "max": 64, "stride": 8}}}, "unknown key 'stride'"),
    ({"parameters": {"array.rows": []}}, "at least one value"),
    ({"parameters": {"array.rows": [8, 8]}}, "repeat"),
    ({"array.rows": [8, 16]}, "parameters go under sweep.parameters"),
    ({"strategy": "annealing"}, "allowed: grid, random, lhs, nsga2, tpe"),
    ({"budget": -1}, "sweep.budget"),
    ({"constraints": ["array.rows ** 2 < 5 if True else 0"]}, "not allowed"),
    ({"constraints": ["__import__('os').system('true')"]}, "may be called"),
    ({"constraints": ["array.rows * area_mm2 < 5"]}, "mixes spec fields and result metrics"),
    ({"constraints": ["array.depth < 5"]}, "neither a spec field nor a metric"),
    ({"constraints": ["array.rows <"]}, "cannot parse"),
    ({"derived": {"array.cols": "array.rows * 0"}}, "array.cols"),
    ({"objectives": ["speed"]}, "unknown metric 'speed'"),
    ({"objectives": [{"latency": "fastest"}]}, "allowed: min, max"),
])
def test_bad_sweep_sections_name_the_field_and_the_allowed_values(raw, expected):
    with pytest.raises(SpecError, match=None) as info:
        spacemod.parse(BASE, raw)
    assert expected in str(info.value)
