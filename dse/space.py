"""The design space a spec's `sweep:` section describes, validated.

In: the raw `sweep:` mapping of a hardware spec (compiler/spec.py keeps it as
data; the explorer owns it) and the base Spec. Out: a `Space` that lists each
parameter's ordered values, turns a choice of value indices into a design
point, checks constraints, applies derived parameters and names the
objectives. Every error is a SpecError naming the field path and what is
allowed. The section's shape:

    sweep:
      strategy: grid                 # grid | random | lhs | nsga2 | tpe
      budget: 200                    # design points to evaluate (all but grid)
      seed: 0
      parameters:                    # field path -> values
        array.rows: [16, 32, 64]                       # a list
        array.cols: {min: 16, max: 128, step: 16}      # a linear range
        memory.input_scratchpad_kib: {min: 32, max: 1024, factor: 2}   # a geometric range
        clock_ghz: {min: 0.5, max: 2.0, num: 4}        # num evenly spaced values
      derived:                       # field path -> expression of other fields
        memory.weight_scratchpad_kib: memory.input_scratchpad_kib
      constraints:                   # expressions that must hold
        - array.rows * array.cols <= 16384             # on parameters: checked before evaluating
        - area_mm2 <= 20                               # on results: checked after
      objectives: [latency_s, energy_j, area_mm2]      # or {name: min|max}
"""
from __future__ import annotations

import ast
import dataclasses
import math
import operator
from dataclasses import dataclass, field

from compiler import spec as specmod
from compiler import targets
from compiler.errors import SpecError

STRATEGIES = ("grid", "random", "lhs", "nsga2", "tpe")

# Each target's design figures (its Spec's FIGURES, e.g. pe_count, sm_count): unit, direction, definition
FIGURES = {name: definition for target in targets.names()
           for name, definition in targets.get(target).spec.FIGURES.items()}
# Point-level figures a constraint or objective may name: unit, direction
# that is better, one-line definition (the report shows these).
METRICS = {
    "latency_s": ("s", "min", "seconds per inference, weighted mean over the workloads"),
    "throughput_inf_s": ("inferences/s", "max", "1 / latency_s"),
    "energy_j": ("J", "min", "joules per inference, weighted mean over the workloads"),
    "edp_j_s": ("J*s", "min", "energy-delay product: energy_j x latency_s"),
    "area_mm2": ("mm^2", "min", "silicon area of the design's datapath and SRAMs (area_by_component_mm2)"),
    "power_w": ("W", "min", "average power while running: energy_j / latency_s"),
    "inferences_per_j": ("inferences/J", "max", "perf per watt: 1 / energy_j"),
    "throughput_per_mm2": ("inferences/s/mm^2", "max", "perf per area: throughput_inf_s / area_mm2"),
    "utilisation": ("fraction", "max", "MACs / (cycles x the target's peak MACs per cycle), weighted mean over "
                    "the workloads"),
    **FIGURES,
}
ALIASES = {"latency": "latency_s", "throughput": "throughput_inf_s", "energy": "energy_j",
           "edp": "edp_j_s", "area": "area_mm2", "power": "power_w", "perf_per_w": "inferences_per_j",
           "perf_per_mm2": "throughput_per_mm2"}
SECTION_KEYS = ("strategy", "budget", "seed", "parameters", "derived", "constraints", "objectives")
DEFAULT_OBJECTIVES = ("latency_s", "energy_j", "area_mm2")
# At most 10,000 values per swept parameter: a range is expanded into a list before any work, and
# two parameters of that many values already make a 10^8-point grid, beyond any sweep that finishes
# (~10 ms per evaluation); a larger count is a step or factor typo (0.0001 for 0.1, 1.001 for 2).
MAX_VALUES_PER_PARAMETER = 10_000


def metric_name(name: str, where: str) -> str:
    name = ALIASES.get(name, name)
    if name not in METRICS:
        allowed = [*METRICS, *ALIASES]
        raise SpecError(f"{where}: unknown metric '{name}'; {specmod.did_you_mean(name, allowed)}"
                        f"allowed: {', '.join(allowed)}")
    return name


def field_paths(spec, prefix: str = "") -> list:
    """Every dotted path of a Spec's settable fields (sections expanded), in declaration order;
    `workloads` and `sweep` are the explorer's input, not hardware, so they are not among them."""
    paths = []
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if dataclasses.is_dataclass(value):
            paths += field_paths(value, f"{prefix}{f.name}.")
        elif f.name not in ("workloads", "sweep"):
            paths.append(prefix + f.name)
    return paths


def _finite(value) -> bool:
    """A finite int or float (not a bool; YAML .nan and .inf, and integers beyond every float, are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


# --- expressions ------------------------------------------------------------

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "log2": math.log2, "sqrt": math.sqrt}


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


@dataclass(frozen=True)
class Expression:
    """A small arithmetic/comparison expression over dotted field names and metrics.

    Only numbers, strings, names, + - * / // % **, comparisons, and/or/not and
    min/max/abs/log2/sqrt are allowed: a spec file never runs arbitrary code."""
    text: str
    tree: ast.Expression
    names: frozenset

    @classmethod
    def parse(cls, text, where: str) -> "Expression":
        if not isinstance(text, (str, int, float)) or isinstance(text, bool):
            raise SpecError(f"{where}: expected an expression string, got {text!r}")
        text = str(text)
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError:
            raise SpecError(f"{where}: cannot parse expression {text!r}") from None
        names = set()
        for node in ast.walk(tree):
            dotted = _dotted(node) if isinstance(node, (ast.Name, ast.Attribute)) else None
            if dotted and dotted.split(".")[0] not in _FUNCTIONS:
                names.add(dotted)
            allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Constant,
                       ast.Name, ast.Attribute, ast.Load, ast.Call, ast.USub, ast.UAdd, ast.Not,
                       ast.And, ast.Or, *_BINARY, *_COMPARE)
            if not isinstance(node, allowed):
                raise SpecError(f"{where}: '{type(node).__name__}' is not allowed in expression {text!r}")
            if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
                raise SpecError(f"{where}: only {', '.join(_FUNCTIONS)} may be called in {text!r}")
            if isinstance(node, ast.Constant) and not (isinstance(node.value, str) or _finite(node.value)):
                raise SpecError(f"{where}: {node.value!r} in {text!r}: numbers must be finite")
        # Names that are prefixes of other names are attribute chains, not fields.
        names = {n for n in names if not any(o.startswith(n + ".") for o in names)}
        return cls(text, tree, frozenset(names))

    def evaluate(self, values: dict):
        def ev(node):
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant):
                return node.value
            if isinstance(node, (ast.Name, ast.Attribute)):
                return values[_dotted(node)]
            if isinstance(node, ast.BinOp):
                return _BINARY[type(node.op)](ev(node.left), ev(node.right))
            if isinstance(node, ast.UnaryOp):
                v = ev(node.operand)
                return -v if isinstance(node.op, ast.USub) else (+v if isinstance(node.op, ast.UAdd) else not v)
            if isinstance(node, ast.BoolOp):
                vals = [ev(v) for v in node.values]
                return all(vals) if isinstance(node.op, ast.And) else any(vals)
            if isinstance(node, ast.Compare):
                left = ev(node.left)
                for op, comp in zip(node.ops, node.comparators):
                    right = ev(comp)
                    if not _COMPARE[type(op)](left, right):
                        return False
                    left = right
                return True
            if isinstance(node, ast.Call):
                return _FUNCTIONS[node.func.id](*(ev(a) for a in node.args))
            raise AssertionError(node)  # parse() admits nothing else
        return ev(self.tree)


# --- parameters ---------------------------------------------------------------

def _range_values(raw: dict, where: str) -> list:
    allowed = {"min", "max", "step", "factor", "num"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key '{unknown[0]}' in a range; allowed: min, max and one of "
                        "step, factor, num")
    if "min" not in raw or "max" not in raw:
        raise SpecError(f"{where}: a range needs 'min' and 'max'")
    lo, hi = raw["min"], raw["max"]
    if not (_finite(lo) and _finite(hi)) or lo > hi:
        raise SpecError(f"{where}: range min/max must be finite numbers with min <= max, got {lo!r}..{hi!r}")
    kinds = [k for k in ("step", "factor", "num") if k in raw]
    if len(kinds) != 1:
        raise SpecError(f"{where}: a range needs exactly one of 'step' (linear), 'factor' (geometric) "
                        "or 'num' (evenly spaced count)")
    kind, arg = kinds[0], raw[kinds[0]]
    integral = isinstance(lo, int) and isinstance(hi, int)
    if kind == "step":
        if not _finite(arg) or arg <= 0:
            raise SpecError(f"{where}: 'step' must be a finite number > 0, got {arg!r}")
        _check_count((hi - lo) / arg + 1, where)
        count = int(math.floor((hi - lo) / arg + 1e-9)) + 1
        values = [lo + i * arg for i in range(count)]
        integral = integral and isinstance(arg, int)
    elif kind == "factor":
        if not _finite(arg) or arg <= 1 or lo <= 0:
            raise SpecError(f"{where}: 'factor' must be a finite number > 1 and min > 0, got factor {arg!r}, "
                            f"min {lo!r}")
        _check_count(math.log(hi / lo) / math.log(arg) + 1, where)
        values, v = [], lo
        while v <= hi * (1 + 1e-9):
            values.append(v)
            v *= arg
        integral = integral and isinstance(arg, int)
    else:
        if not isinstance(arg, int) or isinstance(arg, bool) or arg < 1:
            raise SpecError(f"{where}: 'num' must be a positive integer, got {arg!r}")
        _check_count(arg, where)
        values = [lo + (hi - lo) * i / (arg - 1) for i in range(arg)] if arg > 1 else [lo]
        integral = integral and all(float(v).is_integer() for v in values)
    return [int(round(v)) if integral else float(v) for v in values]


def _check_count(count: float, where: str) -> None:
    if count > MAX_VALUES_PER_PARAMETER:
        raise SpecError(f"{where}: the range gives {count:.3g} values; at most {MAX_VALUES_PER_PARAMETER:,} "
                        "per parameter (check its step, factor or num)")


def _parameter_values(raw, where: str) -> list:
    if isinstance(raw, list):
        values = raw
    elif isinstance(raw, dict) and set(raw) == {"choices"}:
        values = raw["choices"]
    elif isinstance(raw, dict):
        values = _range_values(raw, where)
    else:
        raise SpecError(f"{where}: give a list of values, {{choices: [...]}} or a range "
                        f"{{min, max, step|factor|num}}, got {raw!r}")
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where}: needs at least one value")
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"{where}: values repeat: {values!r}")
    return values


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # "min" or "max"

    @property
    def sign(self) -> float:
        """Multiply by this to turn the objective into one to minimise."""
        return 1.0 if self.direction == "min" else -1.0


def _objectives(raw, where: str) -> tuple:
    if raw is None:
        raw = list(DEFAULT_OBJECTIVES)
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{where}: give a non-empty list, e.g. [latency_s, energy_j, area_mm2]")
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if isinstance(item, str):
            name = metric_name(item, at)
            out.append(Objective(name, METRICS[name][1]))
        elif isinstance(item, dict) and len(item) == 1:
            (name, direction), = item.items()
            name = metric_name(name, at)
            if direction not in ("min", "max"):
                raise SpecError(f"{at}: direction of '{name}' is {direction!r}; allowed: min, max")
            out.append(Objective(name, direction))
        else:
            raise SpecError(f"{at}: give a metric name or {{name: min|max}}, got {item!r}")
    if len({o.name for o in out}) != len(out):
        raise SpecError(f"{where}: an objective is listed twice")
    return tuple(out)


@dataclass(frozen=True)
class Space:
    """Parameters (ordered values each), derived fields, constraints, objectives."""
    base: object                        # the Spec every point starts from
    parameters: dict                    # field path -> list of values
    derived: dict = field(default_factory=dict)        # field path -> Expression
    point_constraints: tuple = ()       # Expressions over spec fields
    result_constraints: tuple = ()      # Expressions over METRICS
    objectives: tuple = ()
    strategy: str = "grid"
    budget: int | None = None
    seed: int = 0

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.parameters.values())

    def point(self, indices) -> dict:
        """The design point (field path -> value) for one value index per parameter."""
        return {path: values[int(i)] for (path, values), i in zip(self.parameters.items(), indices)}

    def spec_of(self, point: dict):
        """The validated Spec of a design point, derived fields applied."""
        spec = self.base
        for path, value in point.items():
            spec = specmod.replace_path(spec, path, value)
        for path, expr in self.derived.items():
            try:
                value = expr.evaluate(_field_values(spec, expr.names))
            except (ArithmeticError, TypeError, ValueError) as exc:
                raise SpecError(f"sweep.derived.{path}: {expr.text!r} failed at {point}: {exc}") from None
            spec = specmod.replace_path(spec, path, _narrow(spec, path, value))
        return spec

    def violated(self, spec) -> str:
        """The first parameter constraint the spec breaks, or ''."""
        return _first_violated(self.point_constraints, lambda expr: _field_values(spec, expr.names))

    def violated_by_results(self, metrics: dict) -> str:
        return _first_violated(self.result_constraints, lambda expr: metrics)


def _first_violated(constraints, values_of) -> str:
    """The first constraint that fails, or cannot be evaluated at this point (a division by zero
    there makes the point infeasible, with the reason, rather than stopping the sweep); or ''."""
    for expr in constraints:
        try:
            if not expr.evaluate(values_of(expr)):
                return f"constraint violated: {expr.text}"
        except (ArithmeticError, TypeError, ValueError) as exc:
            return f"constraint {expr.text} cannot be evaluated here ({exc})"
    return ""


def _narrow(spec, path: str, value):
    """Integers computed as floats (e.g. 2 * 16.0) go into int fields as ints."""
    current = field_value(spec, path)
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float) \
            and value.is_integer():
        return int(value)
    return value


def field_value(spec, path: str):
    """The value of a dotted field path in a Spec."""
    for part in path.split("."):
        spec = getattr(spec, part)
    return spec


def _field_values(spec, names) -> dict:
    return {name: field_value(spec, name) for name in names}


def _check_field(base, name: str, where: str, metrics: bool) -> None:
    """`name` in an expression is a field (or property) of the Spec; `metrics`: the expression
    could have named a result metric instead, so the message lists those too."""
    value = base
    for part in name.split("."):
        if not hasattr(value, part) or part.startswith("_"):
            paths = field_paths(base)
            hint = specmod.did_you_mean(name, [*paths, *METRICS] if metrics else paths)
            also = f"; metrics: {', '.join(METRICS)}" if metrics else ""
            what = "neither a spec field nor a metric" if metrics else "not a spec field"
            raise SpecError(f"{where}: '{name}' is {what}; {hint}fields: {', '.join(paths)}{also}")
        value = getattr(value, part)


def _check_path(base, path: str, where: str) -> None:
    """A swept or derived field path names a settable field of the Spec."""
    paths = field_paths(base)
    if path not in paths:
        raise SpecError(f"{where}: unknown field '{path}'; {specmod.did_you_mean(path, paths)}"
                        f"allowed: {', '.join(paths)}")


def _trial(expr: Expression, values: dict, where: str, errors=(TypeError,)):
    """Evaluate an expression at the spec's own values: an error of a kind in `errors` (by
    default a type mismatch, a number against a string, wrong at every point) is a mistake in
    the spec, found before any work; another (a division by zero) only rules out some points."""
    try:
        return expr.evaluate(values)
    except (ArithmeticError, TypeError, ValueError) as exc:
        if isinstance(exc, errors):
            raise SpecError(f"{where}: {expr.text!r} cannot be evaluated at the spec's own values ({exc})") \
                from None
        return None


def _parameters(base, raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a mapping of field path -> values")
    parameters = {}
    for path, values_raw in raw.items():
        at = f"{where}.{path}"
        _check_path(base, path, where)
        values = _parameter_values(values_raw, at)
        for v in values:
            try:
                specmod.replace_path(base, path, v)
            except SpecError as exc:
                raise SpecError(f"{at}: {str(exc).removeprefix('sweep: ')}") from None
        parameters[path] = values
    return parameters


def _derived(spec, raw, parameters: dict, where: str) -> tuple:
    """(field path -> Expression, the base Spec with them applied). Each must give its field a
    valid value at the spec's own values, as it is applied at every point."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a mapping of field path -> expression")
    derived = {}
    for path, text in raw.items():
        at = f"{where}.{path}"
        _check_path(spec, path, where)
        if path in parameters:
            raise SpecError(f"{at}: is also a swept parameter; give it one role")
        expr = Expression.parse(text, at)
        for name in expr.names:
            _check_field(spec, name, at, metrics=False)
        value = _trial(expr, _field_values(spec, expr.names), at, (ArithmeticError, TypeError, ValueError))
        try:
            spec = specmod.replace_path(spec, path, _narrow(spec, path, value))
        except SpecError as exc:
            raise SpecError(f"{at}: {expr.text!r} at the spec's own values: {str(exc).removeprefix('sweep: ')}") \
                from None
        derived[path] = expr
    return derived, spec


def _constraints(spec, raw, where: str) -> tuple:
    """(constraints on spec fields, constraints on result metrics)."""
    if not isinstance(raw, list):
        raise SpecError(f"{where}: must be a list of expressions")
    point_c, result_c = [], []
    for i, text in enumerate(raw):
        at = f"{where}[{i}]"
        expr = Expression.parse(text, at)
        metrics = {n for n in expr.names if n in METRICS}
        if metrics and metrics != set(expr.names):
            raise SpecError(f"{at}: {expr.text!r} mixes spec fields and result metrics; split it")
        if not metrics:
            for name in expr.names:
                _check_field(spec, name, at, metrics=True)
        _trial(expr, dict.fromkeys(METRICS, 1.0) if metrics else _field_values(spec, expr.names), at)
        (result_c if metrics else point_c).append(expr)
    return tuple(point_c), tuple(result_c)


def parse(base, raw) -> Space:
    """Validate the raw `sweep:` section against the base Spec: every path, value, expression
    and name, before any work."""
    where = "sweep"
    if raw is None:
        return Space(base, {}, objectives=_objectives(None, f"{where}.objectives"))
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a mapping with keys {', '.join(SECTION_KEYS)}")
    unknown = sorted(set(raw) - set(SECTION_KEYS))
    if unknown:
        hint = ("parameters go under sweep.parameters; " if "." in unknown[0]
                else specmod.did_you_mean(unknown[0], SECTION_KEYS))
        raise SpecError(f"{where}: unknown key '{unknown[0]}'; {hint}allowed: {', '.join(SECTION_KEYS)}")
    strategy = raw.get("strategy", "grid")
    if strategy not in STRATEGIES:
        raise SpecError(f"{where}.strategy: {strategy!r}; {specmod.did_you_mean(strategy, STRATEGIES)}"
                        f"allowed: {', '.join(STRATEGIES)}")
    budget, seed = raw.get("budget"), raw.get("seed", 0)
    for name, value in (("budget", budget), ("seed", seed)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise SpecError(f"{where}.{name}: must be a non-negative integer, got {value!r}")
    parameters = _parameters(base, raw.get("parameters") or {}, f"{where}.parameters")
    derived, spec = _derived(base, raw.get("derived") or {}, parameters, f"{where}.derived")
    point_c, result_c = _constraints(spec, raw.get("constraints") or [], f"{where}.constraints")
    return Space(base, parameters, derived, point_c, result_c,
                 _objectives(raw.get("objectives"), f"{where}.objectives"), strategy, budget, seed)
