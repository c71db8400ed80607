"""What an honest-but-curious server learns about each client's label distribution.

The paper says APS hides the class counts n_ij because a client uploads n_ij-scaled prototypes
instead of n_ij. But the norm of a scaled prototype is n_ij times the norm of the (masked) mean
feature, and mean features of one client have similar norms across classes, so the counts'
*ratios* survive: the server's estimate of client i's label distribution is

    pi_hat_ij = ||v_ij|| / sum_j' ||v_ij'||      over the classes j client i uploads,

which needs no knowledge of the feature scale (it cancels). :func:`recover_distribution` is that
estimator, applied to any class-wise upload (prototypes, scaled or not, CPS-compressed or not;
logits). It is judged against the client's true training label distribution by the total
variation distance (TVD, 0 = exact, 1 = disjoint) and by the Spearman rank correlation of the
counts over the classes the client holds, beside two guesses: ``blind`` (uniform over all K
classes: no message seen) and ``presence`` (uniform over the classes the client uploads: what
the class list alone reveals, for every prototype or logit method).

:func:`observed_uploads` runs a config in this process and yields every upload the server
receives (after decoding, as the server sees it); :func:`attack` applies the estimator to each,
one row per (round, client). With ``secure_agg`` the server receives masked tables
(``tinyproto.comm.secagg``): the estimator is applied to each table read as plain fixed point,
every class "uploaded".
"""

from __future__ import annotations

import math

import pandas as pd
import torch


def recover_distribution(classes: torch.Tensor, vectors: torch.Tensor, num_classes: int):
    """The norm-ratio estimate of a client's label distribution [K] from one upload."""
    norms = vectors.detach().to(torch.float64).norm(dim=1)
    pi = torch.zeros(num_classes, dtype=torch.float64)
    total = float(norms.sum())
    if total > 0 and math.isfinite(total):
        pi[classes.long()] = norms / total
    elif len(classes):
        pi[classes.long()] = 1.0 / len(classes)
    return pi


def tvd(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total variation distance between two distributions over the same classes."""
    return 0.5 * float((p.to(torch.float64) - q.to(torch.float64)).abs().sum())


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 values or a
    constant side."""
    if len(a) < 3:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else float("nan")


def _ranks(x: torch.Tensor) -> torch.Tensor:
    x = x.to(torch.float64)
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    for v in torch.unique(x):  # ties share their mean rank
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def judge(classes, vectors, counts: torch.Tensor) -> dict:
    """The estimator on one upload vs the client's true counts [K]: TVD of the attack and of the
    two guesses, and the rank correlation over the classes the client holds."""
    K = len(counts)
    true = counts.to(torch.float64) / max(float(counts.sum()), 1.0)
    est = recover_distribution(classes, vectors, K)
    presence = torch.zeros(K, dtype=torch.float64)
    if len(classes):
        presence[classes.long()] = 1.0 / len(classes)
    held = classes.long()
    return {
        "classes_uploaded": int(len(classes)),
        "tvd_attack": tvd(est, true),
        "tvd_presence": tvd(presence, true),
        "tvd_blind": tvd(torch.full((K,), 1.0 / K, dtype=torch.float64), true),
        "spearman": spearman(est[held], true[held]),
    }


def observed_uploads(config, rounds: int | None = None):
    """Run ``config`` in this process for ``rounds`` rounds (default: all) and yield, after each
    round, (round (1-based), the run's setup, {client id: (classes [k], vectors [k, w])}): every
    class-wise upload as the server received it (decoded from the payload codec; with
    ``secure_agg`` each masked table read as plain fixed point, every class present)."""
    from tinyproto.comm import secagg
    from tinyproto.runtime import step
    from tinyproto.runtime.clients import LocalClients, run_numerics
    from tinyproto.runtime.environment import check_environment
    from tinyproto.runtime.setup import setup

    cfg = config
    cfg.validate()
    device = check_environment(cfg, None)
    with run_numerics(device):
        S = setup(cfg)
        algo = S.algo
        server_round = algo.server_round
        seen: dict[int, object] = {}

        def observed(uploads, rnd):  # the decoded uploads, as the server checks them
            seen.clear()
            seen.update(dict(uploads))
            return server_round(uploads, rnd)

        algo.server_round = observed
        clients = LocalClients(S)
        for rnd in range(rounds or cfg.rounds):
            step.run_round(S, clients, rnd, [])
            got = {}
            for cid, msg in sorted(seen.items()):
                if secagg.FIELD in msg:
                    got[cid] = secagg.decode_alone(msg[secagg.FIELD], algo.width)
                    continue
                key = getattr(algo, "key", None)  # a class-vector method's vectors
                if key in msg and "classes" in msg:
                    got[cid] = (msg["classes"].cpu(), msg[key].cpu())
            yield rnd + 1, S, got


def attack(config, rounds: int | None = None) -> pd.DataFrame:
    """Run ``config`` in this process for ``rounds`` rounds (default: all) and judge every
    upload the server receives; columns: round, client, algorithm, and :func:`judge`'s."""
    rows: list[dict] = []
    for rnd, S, uploads in observed_uploads(config, rounds):
        for cid, (classes, vectors) in uploads.items():
            counts = torch.as_tensor(S.fed.clients[cid].train_counts)
            row = {"round": rnd, "client": cid, "algorithm": config.algorithm}
            row.update(judge(classes, vectors, counts))
            rows.append(row)
    return pd.DataFrame(rows)


LEAK_RATIO = 0.5  # the counts are recovered when the attack's TVD is below half the class list's


def counts_recovered(count: pd.DataFrame, algorithm: str = "tinyproto-fp") -> dict | None:
    """The attack's outcome on ``algorithm``'s uploads, from :func:`attack` rows of one profile
    with a ``seed`` column (``results/privacy/count_attack.csv``): at the table's last round,
    each seed's mean over its clients of the attack's TVD, the class-list guess's TVD
    (``presence``) and the Spearman correlation, then their means over the seeds. ``leak``: the
    attack recovers the counts in every seed (its TVD below ``LEAK_RATIO`` x the guess's);
    ``hidden``: in no seed. None when the table has no rows of ``algorithm``."""
    q = count[count["algorithm"] == algorithm]
    if q.empty:
        return None
    rnd = int(q["round"].max())
    per_seed = (
        q[q["round"] == rnd]
        .groupby("seed")[["tvd_attack", "tvd_presence", "spearman"]]
        .mean()
        .sort_index()
    )
    below = per_seed.tvd_attack < LEAK_RATIO * per_seed.tvd_presence
    m = per_seed.mean()
    return dict(
        round=rnd,
        seeds=[int(s) for s in per_seed.index],
        tvd_attack=float(m.tvd_attack),
        tvd_presence=float(m.tvd_presence),
        spearman=float(m.spearman),
        ratio=[float(x) for x in per_seed.tvd_attack / per_seed.tvd_presence],
        leak=bool(below.all()),
        hidden=bool(not below.any()),
        run_ids=sorted(set(q["run_id"])) if "run_id" in q else [],
    )
