"""Search strategies: which design points a sweep evaluates, in batches.

A strategy proposes batches of index tuples (one value index per parameter of
the Space) and is told each batch's objective values (minimised; None for an
infeasible point) before it proposes the next. grid, random and lhs propose
one batch; nsga2 and tpe propose a batch at a time from optuna's samplers,
searching the ordinal value index of each parameter so neighbouring values
stay neighbours. All are seeded: the same
spec proposes the same points, which is what lets a re-run skip them.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np

from compiler.errors import SpecError


class Grid:
    def __init__(self, space, budget=None, seed=0):
        if budget is not None and budget < space.size:
            raise SpecError(f"sweep.budget: {budget} is less than the grid's {space.size} points; "
                            "use strategy random, lhs or nsga2 to sample it")
        self.batch = list(itertools.product(*(range(len(v)) for v in space.parameters.values())))

    def propose(self):
        batch, self.batch = self.batch, None
        return batch

    def tell(self, results):
        pass


class Listed(Grid):
    """Given points, proposed once in their order: a re-priced study's (dse reprice), which are its
    source study's points whatever the strategy would choose with the new figures."""

    def __init__(self, indices):
        self.batch = [tuple(int(i) for i in point) for point in indices]


class _Sampled(Grid):
    """Budget distinct points drawn once (the whole grid if the budget covers it);
    subclasses give `draw(sizes, budget, rng)` -> [budget, parameters] value indices."""

    def __init__(self, space, budget=None, seed=0):
        sizes = [len(v) for v in space.parameters.values()]
        if budget is None:
            raise SpecError(f"sweep.budget: strategy {type(self).__name__.lower()} needs a budget "
                            "(design points to evaluate)")
        if budget >= space.size:
            self.batch = list(itertools.product(*(range(n) for n in sizes)))
            return
        rng = np.random.default_rng(seed)
        chosen = list(dict.fromkeys(map(tuple, self.draw(sizes, budget, rng))))
        seen = set(chosen)
        while len(chosen) < budget:  # top up where the draw repeated a point
            point = tuple(int(rng.integers(n)) for n in sizes)
            if point not in seen:
                seen.add(point)
                chosen.append(point)
        self.batch = chosen[:budget]


class Random(_Sampled):
    def draw(self, sizes, budget, rng):
        return np.stack([rng.integers(n, size=budget) for n in sizes], axis=1)


class Lhs(_Sampled):
    """Latin hypercube (McKay et al., Technometrics 1979) over the value indices:
    each parameter's range is cut into `budget` strata, each stratum used once."""

    def draw(self, sizes, budget, rng):
        from scipy.stats import qmc
        unit = qmc.LatinHypercube(d=len(sizes), seed=rng).random(budget)
        return np.minimum((unit * np.array(sizes)).astype(int), np.array(sizes) - 1)


class _Optuna:
    """An optuna sampler over value indices, a batch of asks at a time; infeasible
    points are told as constraint violations (they lose to every feasible point)
    rather than dropped. Subclasses choose the sampler and the batch size."""

    def __init__(self, space, budget=None, seed=0, objectives=1):
        import optuna
        if budget is None:
            raise SpecError(f"sweep.budget: strategy {self.name} needs a budget (design points to evaluate)")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space, self.budget = space, min(budget, space.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constraints_func and multivariate are marked experimental
            sampler = self.sampler(optuna, seed, lambda t: t.user_attrs["violation"])
        self.study = optuna.create_study(directions=["minimize"] * objectives, sampler=sampler)
        self.objectives = objectives
        self.seen: set = set()
        self.pending = []
        self.rng = np.random.default_rng(seed)

    def propose(self):
        if len(self.seen) >= self.budget:
            return None
        want = min(self.batch_size, self.budget - len(self.seen))
        batch, new, asked = [], 0, 0
        while new < want and asked < 3 * want:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trial = self.study.ask()
            asked += 1
            point = tuple(trial.suggest_int(path, 0, len(values) - 1)
                          for path, values in self.space.parameters.items())
            self.pending.append((trial, point))
            batch.append(point)
            if point not in self.seen:
                self.seen.add(point)
                new += 1
        # A converging sampler mostly repeats known points (each ask costs more as the
        # study grows): top the batch up with seeded random unseen points instead. The
        # sampler is not told about those; they are evaluated and stored like the rest.
        sizes = [len(v) for v in self.space.parameters.values()]
        while new < want:
            point = tuple(int(self.rng.integers(n)) for n in sizes)
            if point not in self.seen:
                self.seen.add(point)
                batch.append(point)
                new += 1
        return batch

    def tell(self, results):
        worst = [1e300] * self.objectives
        for trial, point in self.pending:
            values = results.get(point)
            trial.set_user_attr("violation", (1.0,) if values is None else (-1.0,))
            self.study.tell(trial, worst if values is None else list(values))
        self.pending = []


class Nsga2(_Optuna):
    """NSGA-II (Deb et al., IEEE TEVC 2002): a generation per batch. Needs several
    generations to pay off: at 3 objectives and ~50 points, tpe does better."""
    name = "nsga2"

    @property
    def batch_size(self):
        return int(np.clip(self.budget // 8, 8, 50))

    def sampler(self, optuna, seed, constraints):
        return optuna.samplers.NSGAIISampler(population_size=self.batch_size, seed=seed,
                                             constraints_func=constraints)


class Tpe(_Optuna):
    """Multi-objective TPE (Ozaki et al., GECCO 2020) with a multivariate model; batches
    of 8 asked with the constant-liar heuristic so parallel workers stay busy."""
    name = "tpe"
    batch_size = 8

    def sampler(self, optuna, seed, constraints):
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=int(np.clip(self.budget // 4, 8, 32)),
                                          constraints_func=constraints)


STRATEGIES = {"grid": Grid, "random": Random, "lhs": Lhs, "nsga2": Nsga2, "tpe": Tpe}


def make(space, objectives: int):
    cls = STRATEGIES[space.strategy]
    if issubclass(cls, _Optuna):
        return cls(space, space.budget, space.seed, objectives)
    return cls(space, space.budget, space.seed)
