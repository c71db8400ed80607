"""mu tuned as the paper did (Sec. 5.1: "determine [mu] through grid search"), on a validation
split, never on the test split.

The grid is ``MU_GRID`` times the value the run would use by default (``rule_mu``: the paper's
constant on its full data sets, else the product rule mu x (training samples per class) = 0.68
for FP / 4.5 for FT). Each grid point is a run of the arm's config with ``validation`` =
``VALIDATION``: every client holds out a fifth of its training split and the run evaluates on
it (``Config.validation``; the test split is never evaluated). The chosen mu has the best
last-round validation accuracy, mean over ``TUNE_SEEDS`` (a diverged run counts at chance);
ties go to the grid point nearest the rule. The scorecard's tuned arms then train on the whole
training split and are judged on the test split like every other arm, with the chosen mu carried
over to the larger split (``transfer``): APS's global prototype is a sum of count-scaled
prototypes, so its size grows with the training samples per class n, and the value a grid search
on 80 % of the data finds is a value of mu x n, not of mu.

Nothing here trains: grid runs are looked up in the profile's runs folder (and, when missing,
listed by ``Runs.missing`` for ``tinyproto scorecard --compute``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from tinyproto.config import Config, ConfigError

MU_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)  # multiples of rule_mu, a decade each way
STEP = 10**0.5  # the grid's spacing (x3.16, shown rounded); an edge point extends it by one
MAX_EXTEND = 3  # at most this many points added beyond either edge
VALIDATION = 0.2  # share of each client's training split held out for tuning
TUNE_SEEDS = (0,)  # a grid search on one seed, as a paper's would be; each seed is its own split


@functools.lru_cache(maxsize=64)
def _train_per_class(cfg: Config) -> float:
    """Training samples per class of ``cfg``'s partition (read once per config)."""
    from tinyproto.data import dataset_for, federate

    fed = federate(dataset_for(cfg), cfg)
    return sum(int(c.train_idx.numel()) for c in fed.clients) / fed.num_classes


def rule_mu(cfg: Config) -> float:
    """The mu ``cfg`` runs with by default (APS on, mu left to the rule): the paper's constant
    (``preset_mu``) or the rule on its data partition, as ``runtime.setup`` resolves it.
    DataError if the rule needs a data set that is not there."""
    from tinyproto.config.profiles import preset_mu

    base = cfg.replace(mu="auto", validation=0.0)
    preset = preset_mu(base)
    if preset is not None:  # the paper's constant: no data read
        return preset
    return base.resolve_mu(_train_per_class(base))


def transfer(cfg: Config, mu: float) -> float:
    """The mu a run of ``cfg`` on its whole training split uses for the value ``mu`` chosen on
    the validation split: the same product mu x (training samples per class), as the rule is
    stated (3 significant digits, as the grid's values). With APS the regulariser's target is
    mu x R(sum_i n_ij p_ij) (divided by |N_j| or not), about mu x n_j times a mean prototype, so
    only the product keeps the target the size the grid search saw."""
    base = cfg.replace(mu="auto", validation=0.0)
    ratio = _train_per_class(base.replace(validation=VALIDATION)) / _train_per_class(base)
    return float(f"{mu * ratio:.3g}")


def grid(cfg: Config, multiples=MU_GRID) -> list[tuple[float, float, list[Config]]]:
    """(multiple, mu, its tuning runs over TUNE_SEEDS) for every grid point around ``cfg``."""
    rule = rule_mu(cfg)
    out = []
    for k in multiples:
        mu = float(f"{k * rule:.3g}")
        out.append((k, mu, [cfg.replace(mu=mu, validation=VALIDATION, seed=s) for s in TUNE_SEEDS]))
    return out


@dataclass
class Tuned:
    """The outcome of one arm's grid search."""

    rule: float  # the rule's mu
    mu: float | None  # the chosen mu, on the validation split (None: grid incomplete)
    table: list[tuple[float, float | None, int]]  # (mu, mean validation accuracy, diverged runs)
    missing: int  # grid runs not finished (neither done nor failed)
    ids: list[str]
    trains_with: float | None = None  # ``mu`` carried to the whole training split (transfer)

    def text(self) -> str:
        cells = []
        for mu, acc, bad in self.table:
            cell = f"{mu:g}: " + ("missing" if acc is None else f"{100 * acc:.2f}")
            cells.append(cell + (f" ({bad} diverged)" if bad else ""))
        chosen = "not chosen yet"
        if self.mu is not None:
            chosen = f"chosen {self.mu:g} on the validation split"
            if self.trains_with is not None:
                chosen += (
                    f", {self.trains_with:g} on the whole training split (the same mu x "
                    "training samples per class)"
                )
        return (
            f"validation accuracy (last round, {VALIDATION:.0%} of each client's training split, "
            f"seed(s) {', '.join(map(str, TUNE_SEEDS))}) by mu: {'; '.join(cells)}; default "
            f"(the paper's constant or the 0.68 / 4.5 rule) {self.rule:g}; {chosen}"
        )


def tune(runs, cfg: Config) -> Tuned:
    """Look up the grid runs of ``cfg`` in ``runs`` (a ``scorecard.Runs``) and choose mu.

    A grid search whose best point is at an edge of the grid has not bracketed the optimum:
    the grid then grows by one point beyond that edge (``STEP``), up to ``MAX_EXTEND`` times,
    and the new points' runs are asked for (``Runs.missing`` lists them for ``--compute``)."""
    multiples = list(MU_GRID)
    while True:
        t = _tune(runs, cfg, multiples)
        if t.mu is None or len(multiples) >= len(MU_GRID) + MAX_EXTEND:
            return t
        best = [r[0] for r in t.table].index(t.mu)
        if 0 < best < len(multiples) - 1:
            return t
        if best == 0:
            multiples.insert(0, float(f"{multiples[0] / STEP:.3g}"))
        else:
            multiples.append(float(f"{multiples[-1] * STEP:.3g}"))


def _tune(runs, cfg: Config, multiples) -> Tuned:
    from tinyproto.config.profiles import DATASET_CLASSES
    from tinyproto.store.failures import diverged, failure

    rule = rule_mu(cfg)
    chance = 1.0 / DATASET_CLASSES.get(cfg.dataset, cfg.num_classes)
    table, ids, missing = [], [], 0
    for _k, mu, configs in grid(cfg, multiples):
        accs, bad = [], 0
        for c in configs:
            s = runs.get(c)
            if s is not None:
                if s.get("evaluated_on") != "validation":
                    raise ConfigError(f"tuning run {c.run_id()} was not evaluated on validation")
                accs.append(float(s["last_acc"]))
                ids.append(c.run_id())
            elif (line := failure(c, runs.root)) is not None and diverged(line):
                bad += 1
                accs.append(chance)
            else:
                missing += 1
        full = len(accs) == len(TUNE_SEEDS)
        table.append((mu, float(np.mean(accs)) if full else None, bad))
    mu = None
    if all(r[1] is not None for r in table):
        best = max(r[1] for r in table)
        winners = [r[0] for r in table if r[1] == best]
        mu = min(winners, key=lambda m: abs(math.log(m / rule)))
    return Tuned(rule, mu, table, missing, ids, None if mu is None else transfer(cfg, mu))
