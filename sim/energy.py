"""Energy, area and power of a run, priced after simulation from a technology table
(hwspecs/tech/<name>.yaml): the run's action counts (MACs, vector element-ops, bytes per
memory level) times the table's energy per action, plus leakage over the latency
(Accelergy's split of action counts from cost tables, so a new table re-prices a run).

In: a Spec and action counts (scalars, or arrays such as per-layer counts).
Out: energy per component (J) and area per component (mm^2).

Each target prices its own components from these tables (its sim module's unit_costs, which
documents its model; sim/targets/__init__.py); this module holds the tables, the
per-operation and SRAM formulas every target shares, and the pricing of action counts:
  compute (MACs), vector (element-ops) and requantizer (requantised outputs) at their unit
  prices, each memory level's bytes at its J per byte, and leakage = leakage_w x latency.
Power = energy / latency.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from compiler.errors import SpecError
from compiler.spec import DATATYPE_BITS, DATATYPES, DRAM_TYPES, technology_path

PJ = 1e-12
UM2_PER_MM2 = 1e6
BITS_PER_KIB = 8192


@dataclass(frozen=True)
class Technology:
    """One validated technology table (units in the field names)."""
    name: str
    path: str
    multiply_pj: dict            # datatype -> pJ per multiply
    add_pj: dict                 # datatype -> pJ per add
    multiply_um2: dict           # datatype -> um^2 per multiplier
    add_um2: dict                # datatype -> um^2 per adder
    register_bit_um2: float      # um^2 per flip-flop bit
    sram_capacity_kib: tuple     # capacities of the published 64-bit access energies (ascending)
    sram_read_64bit_pj: tuple    # pJ per 64-bit access at those capacities
    sram_bitcell_um2: float
    sram_array_efficiency: float  # bitcell area / macro area
    dram_pj_per_bit: dict        # dram type -> pJ per bit moved
    leakage_w_per_mm2: float


_SCALARS = ("register_bit_um2", "sram_bitcell_um2", "sram_array_efficiency", "leakage_w_per_mm2")
_BY_TYPE = ("multiply_pj", "add_pj", "multiply_um2", "add_um2")
_INFO = ("name", "node_nm", "supply_v")


def _number(value, path: Path, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpecError(f"{path}: field '{field}' must be a positive number, got {value!r}")
    return float(value)


def _table(data: dict, key: str, keys: tuple, path: Path) -> dict:
    table = data.get(key)
    if not isinstance(table, dict):
        raise SpecError(f"{path}: field '{key}' must be a mapping of {', '.join(keys)} to numbers")
    missing = [k for k in keys if k not in table]
    unknown = sorted(str(k) for k in set(table) - set(keys))
    if missing or unknown:
        bad = f"{key}.{(missing or unknown)[0]}"
        raise SpecError(f"{path}: field '{bad}' is {'missing' if missing else 'unknown'}; "
                        f"'{key}' needs exactly: {', '.join(keys)}")
    return {k: _number(table[k], path, f"{key}.{k}") for k in keys}


def _sram_curve(data: dict, path: Path) -> tuple:
    table = data.get("sram_read_64bit_pj")
    if not isinstance(table, dict) or len(table) < 2:
        raise SpecError(f"{path}: field 'sram_read_64bit_pj' must map at least two capacities (KiB) "
                        f"to the energy of a 64-bit access (pJ)")
    points = sorted((_number(k, path, f"sram_read_64bit_pj.{k}"),
                     _number(v, path, f"sram_read_64bit_pj.{k}")) for k, v in table.items())
    return tuple(c for c, _ in points), tuple(e for _, e in points)


@functools.cache
def load_technology(path: str) -> Technology:
    """Read and validate a technology table (cached: each file is parsed once per process)."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise SpecError(f"{file}: cannot read technology table ({exc.strerror}); field 'technology' "
                        f"names hwspecs/tech/<name>.yaml or a path") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (UnicodeDecodeError, RecursionError):
        raise SpecError(f"{file}: not a YAML text file (undecodable bytes, or nested too deeply)") from None
    if not isinstance(data, dict):
        raise SpecError(f"{file}: a technology table must be a YAML mapping")
    allowed = _INFO + _SCALARS + _BY_TYPE + ("sram_read_64bit_pj", "dram_pj_per_bit")
    unknown = sorted(set(data) - set(allowed), key=str)
    if unknown:
        raise SpecError(f"{file}: unknown field '{unknown[0]}'; allowed: {', '.join(allowed)}")
    capacity, energy = _sram_curve(data, file)
    efficiency = _number(data.get("sram_array_efficiency"), file, "sram_array_efficiency")
    if efficiency > 1:
        raise SpecError(f"{file}: field 'sram_array_efficiency' is {efficiency}; must be in (0, 1]")
    return Technology(
        name=str(data.get("name", file.stem)), path=str(file),
        **{k: _table(data, k, DATATYPES, file) for k in _BY_TYPE},
        **{k: _number(data.get(k), file, k) for k in _SCALARS},
        sram_capacity_kib=capacity, sram_read_64bit_pj=energy,
        dram_pj_per_bit=_table(data, "dram_pj_per_bit", DRAM_TYPES, file))


def technology(spec) -> Technology:
    return load_technology(str(technology_path(spec.technology)))


def mac_pj(tech: Technology, input: str, weight: str, accumulator: str) -> float:
    """pJ per MAC: one multiplier wide enough for both operands, one accumulator-type add."""
    return max(tech.multiply_pj[input], tech.multiply_pj[weight]) + tech.add_pj[accumulator]


def sram_64bit_pj(tech: Technology, capacity_kib):
    """pJ per 64-bit access of an SRAM of `capacity_kib`: power-law (log-log linear)
    interpolation between the table's points, extended past the ends with the end
    segments' slopes. Exact at the published points; Horowitz's 8 -> 32 KB segment
    has slope 0.5 exactly (energy ~ sqrt(capacity), the bitline/wordline length of a
    square array), 32 KB -> 1 MB has 0.46, so a single sqrt fit would miss 1 MB by 13%."""
    logc, loge = np.log(tech.sram_capacity_kib), np.log(tech.sram_read_64bit_pj)
    x = np.log(np.asarray(capacity_kib, dtype=float))
    lo = loge[0] + (x - logc[0]) * (loge[1] - loge[0]) / (logc[1] - logc[0])
    hi = loge[-1] + (x - logc[-1]) * (loge[-1] - loge[-2]) / (logc[-1] - logc[-2])
    return np.exp(np.where(x < logc[0], lo, np.where(x > logc[-1], hi, np.interp(x, logc, loge))))


def sram_access_pj(tech: Technology, capacity_kib, width_bits):
    """pJ per access `width_bits` wide: a w-bit word is built from w/64 side-by-side
    64-bit slices, each holding capacity x 64/w, all activated per access."""
    slices = np.asarray(width_bits, dtype=float) / 64
    return slices * sram_64bit_pj(tech, np.asarray(capacity_kib, dtype=float) / slices)


def sram_pj_per_byte(tech: Technology, capacity_kib: float, banks: int, width_bytes: float) -> float:
    """pJ per byte moved in a banked SRAM: one access touches one bank's `width_bytes` word
    (reads and writes priced alike, as Horowitz gives reads only)."""
    return float(sram_access_pj(tech, capacity_kib / banks, width_bytes * 8)) / width_bytes


def sram_area_mm2(tech: Technology, capacity_kib: float) -> float:
    return capacity_kib * BITS_PER_KIB * tech.sram_bitcell_um2 / tech.sram_array_efficiency / UM2_PER_MM2


def pe_area_um2(tech: Technology, input: str, weight: str, accumulator: str, macs_per_cycle: int = 1) -> float:
    """One PE: per MAC it completes each cycle a multiplier (wider operand) and an accumulator-type
    adder (the reduction tree and the accumulate), and registers latching that many inputs and
    weights and one partial sum (the operands a PE holds each cycle)."""
    p = macs_per_cycle
    register_bits = p * (DATATYPE_BITS[input] + DATATYPE_BITS[weight]) + DATATYPE_BITS[accumulator]
    return (p * (max(tech.multiply_um2[input], tech.multiply_um2[weight]) + tech.add_um2[accumulator])
            + register_bits * tech.register_bit_um2)


@dataclass(frozen=True)
class UnitCosts:
    """A spec's prices: J per action and mm^2 per component."""
    mac_j: float
    vector_op_j: float
    requant_j: float             # per requantised output (0 on float datapaths)
    byte_j: dict                 # memory level -> J per byte moved
    area_mm2: dict               # component -> mm^2
    leakage_w: float             # leakage power of the whole area
    components: tuple            # names the target gives the MAC, vector-op and requantiser energies


def dynamic_energy_j(costs: UnitCosts, macs, vector_ops, level_bytes: dict, requant_ops=0) -> dict:
    """Dynamic energy per component (J); counts may be scalars or equal-length arrays."""
    mac, vector, requant = costs.components
    energy = {mac: costs.mac_j * np.asarray(macs, dtype=float),
              vector: costs.vector_op_j * np.asarray(vector_ops, dtype=float),
              requant: costs.requant_j * np.asarray(requant_ops, dtype=float)}
    energy.update({level: price * np.asarray(level_bytes[level], dtype=float)
                   for level, price in costs.byte_j.items()})
    return energy


def energy_j(costs: UnitCosts, macs, vector_ops, level_bytes: dict, latency_s: float, requant_ops=0) -> dict:
    """Energy per component of one run (J): the costs' components, the memory levels in the costs'
    order, then leakage."""
    energy = {k: float(v) for k, v in dynamic_energy_j(costs, macs, vector_ops, level_bytes, requant_ops).items()}
    energy["leakage"] = costs.leakage_w * latency_s
    return energy
