"""The mapping of one layer onto a target, as data: which unit runs it, how its loops are tiled
and ordered, and the dataflow. A target's lowering makes one per layer (Program.layers[i].mapping);
`dse compile` prints it (`text`, `table`), stats.json stores `to_dict()` per layer, and the
explorer's store keeps it per evaluation (`from_dict` reads it back).

Fields (every size is a count of elements or iterations, never bytes):
  unit        the kind of unit that computes the layer, one of compiler/program.py's UNITS
              ("matrix": a GEMM engine; "vector": a vector unit)
  dims        loop dimension -> extent. A GEMM layer [M,K] x [K,N] run `groups` times has
              m (output rows: output pixels x batch), k (reduction: Cin/groups x kh x kw),
              n (output columns: Cout/groups) and g (groups); empty where the unit does not tile
  tile        loop dimension -> tile size: the extent one tile step covers (the largest; edge
              tiles are smaller). tiles (derived, in to_dict): tile steps per dimension,
              ceil(extent / tile); their product is the number of tile steps (matmuls) of the layer
  loop_order  the tile loops, outermost first (the innermost one varies fastest)
  dataflow    which operand the unit keeps in place (the target's names, e.g.
              weight_stationary), or None where it does not apply (a vector unit)
  extras      target-specific figures, JSON scalars, documented by the target that writes them
              (e.g. buffers, a tile search's estimated cycles, the datapath of an integer layer)
"""
from __future__ import annotations

from dataclasses import dataclass, field

FIELDS = ("unit", "dims", "tile", "loop_order", "dataflow", "extras")
DERIVED = ("tiles",)    # written by to_dict for readers, recomputed on from_dict


@dataclass(frozen=True)
class Mapping:
    unit: str                                                # compiler/program.py UNITS
    dims: dict = field(default_factory=dict, hash=False)     # dimension -> extent (elements)
    tile: dict = field(default_factory=dict, hash=False)     # dimension -> tile size (elements)
    loop_order: tuple = ()                                   # dimensions, outermost first
    dataflow: str | None = None                              # None: does not apply
    extras: dict = field(default_factory=dict, hash=False)   # target-specific JSON scalars

    @property
    def tiles(self) -> dict:
        """Tile steps per dimension: ceil(extent / tile size)."""
        return {d: -(-self.dims[d] // size) for d, size in self.tile.items()}

    def to_dict(self) -> dict:
        """JSON-ready: plain dicts, lists and scalars (the derived `tiles` included)."""
        return {"unit": self.unit, "dims": dict(self.dims), "tile": dict(self.tile), "tiles": self.tiles,
                "loop_order": list(self.loop_order), "dataflow": self.dataflow, "extras": dict(self.extras)}

    @classmethod
    def from_dict(cls, data: dict) -> Mapping:
        """The Mapping `to_dict` wrote (a stats.json layer's or the store's); ValueError on unknown keys."""
        unknown = set(data) - set(FIELDS) - set(DERIVED)
        if unknown:
            raise ValueError(f"mapping: unknown keys {sorted(unknown)}; allowed: {', '.join(FIELDS)}")
        return cls(unit=data["unit"], dims=dict(data.get("dims", {})), tile=dict(data.get("tile", {})),
                   loop_order=tuple(data.get("loop_order", ())), dataflow=data.get("dataflow"),
                   extras=dict(data.get("extras", {})))

    def text(self) -> str:
        """One line, e.g. 'matrix weight_stationary M1 K784 N128 G1 tile m1 k784 n128 g1 tiles 1x1x1x1
        order g>n>m>k buffers=2 est_cycles=3409'."""
        words = [self.unit] + ([self.dataflow] if self.dataflow else [])
        words += [f"{d.upper()}{v}" for d, v in self.dims.items()]
        if self.tile:
            words += ["tile", *(f"{d}{v}" for d, v in self.tile.items()),
                      "tiles", "x".join(str(v) for v in self.tiles.values())]
        if self.loop_order:
            words += ["order", ">".join(self.loop_order)]
        words += [f"{k}={v}" for k, v in self.extras.items()]
        return " ".join(words)


def table(layers) -> str:
    """One row per layer of `layers` (Program.layers: name, op, mapping): the `dse compile --mapping` table."""
    head = ("layer", "name", "op", "unit", "dataflow", "shape", "tile", "tiles", "order", "extras")
    rows = [head]
    for i, layer in enumerate(layers):
        m = layer.mapping or Mapping("-")
        rows.append((str(i), layer.name, layer.op, m.unit, m.dataflow or "-",
                     " ".join(f"{d.upper()}{v}" for d, v in m.dims.items()) or "-",
                     " ".join(f"{d}{v}" for d, v in m.tile.items()) or "-",
                     "x".join(str(v) for v in m.tiles.values()) or "-", ">".join(m.loop_order) or "-",
                     " ".join(f"{k}={v}" for k, v in m.extras.items()) or "-"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(head) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip() for row in rows]
    return "\n".join(lines + [LEGEND])


LEGEND = """\
shape   loop extents in elements (GEMM: M output rows, K reduction, N output columns, G groups)
tile    elements per tile step (edge tiles are smaller)
tiles   tile steps per dimension, in shape's order; their product is the layer's matmul count
order   tile loops, outermost first
extras  target-specific, defined in compiler/mapping.py"""
