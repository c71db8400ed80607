"""One client step and one round of the server: the only implementation, used by every runtime.

METHOD.md's round: every sampled client trains locally and uploads a message; the server
aggregates the uploads that arrive and returns one message per client; each client stores what
it received; in an evaluation round every client is evaluated on its own test split, and the
round's accuracy is total correct / total test samples. The in-process engine
(``runtime.engine``), the client worker processes (``runtime.clients``), the bench
(``runtime.bench``, through ``tinyproto.timing``) and the Flower apps (``flower.client_app``,
``flower.server_app``) all call the functions below, so seeding, the metrics columns and the
checkpoint schedule exist once.

Client side (whoever holds the client's state: this process, a worker, a SuperNode):
    ``train_client``  seed from (seed, round, client), ``client_round``, the local prototypes
    ``receive``       store the round's download
    ``evaluate``      correct predictions on the client's test split

Server side (whoever holds the algorithm's server state):
    ``aggregate``     ``server_round`` on the uploads (``naming_round``: refusals name the round)
    ``round_row``     the round's metrics row (loss, floats and bytes both ways, who took part)
    ``add_evaluation`` the round's accuracy and its clients.csv rows
    ``eval_round`` / ``checkpoint_round``  the schedule
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from tinyproto import timing
from tinyproto.comm import Message, MessageError
from tinyproto.config.participation import Participation, ids, is_partial


def seed_for(seed: int, rnd: int, cid: int) -> int:
    """The seed of client ``cid``'s training in round ``rnd`` (0-based) of a run seeded ``seed``."""
    return (seed * 1_000_003 + rnd * 10_007 + cid * 101 + 12345) % (2**62)


@dataclass
class Trained:
    """What one client's training step yields."""

    upload: Message
    loss: float  # mean training loss of the round
    prototypes: tuple | None  # (classes, local prototypes) for prototype methods, else None


def codec(algo):
    """The run's payload codec (``Config.payload``: tinyproto.comm.codecs), fp32 by default.
    Every message is encoded by its sender and decoded by its receiver here, so what is
    counted (``round_row``) is what crosses the wire, and the algorithms see float32 arrays."""
    from tinyproto.comm.codecs import parse

    return parse(algo.cfg.payload)


def train_client(algo, state, data, seed: int, rnd: int, cid: int) -> Trained:
    """Client ``cid``'s round ``rnd``: seed torch and the batch order from (seed, rnd, cid),
    train (``algo.client_round``), clip and noise the upload (``dp_clip``: tinyproto.comm.dp),
    mask it (``secure_agg``: tinyproto.comm.secagg), encode it (``codec``), and read its local
    prototypes (prototype methods)."""
    s = seed_for(seed, rnd, cid)
    torch.manual_seed(s)
    gen = torch.Generator().manual_seed(s)
    with timing.part("client"):
        upload, loss = algo.client_round(state, data, rnd, gen)
        cfg = algo.cfg
        if cfg.dp_clip is not None:  # local DP (tinyproto.comm.dp), then the codec
            from tinyproto.comm import dp

            upload = dp.privatize(upload, cfg.dp_clip, cfg.dp_noise, dp.noise_generator(s))
        if cfg.secure_agg:  # a masked table: the server sees only sums (tinyproto.comm.secagg)
            upload = algo.secure_upload(upload, rnd, cid)
        upload = codec(algo).encode(upload)
    return Trained(upload, float(loss), local_prototypes(algo, state))


def local_prototypes(algo, state) -> tuple | None:
    """(classes, local prototypes) a prototype client holds after training, else None."""
    if not algo.prototype_based:
        return None
    p = algo.prototypes(state)
    return None if p.classes is None else (p.classes, p.local)


def receive(algo, state, download: Message) -> None:
    with timing.part("receive"):
        algo.receive(state, codec(algo).decode(download, "server"))


def evaluate(algo, state, data) -> int:
    """Number of correct predictions on the client's test split (Eq. 12 for prototypes)."""
    with timing.part("eval"):
        return algo.evaluate(state, data)


# -- the server's side of a round ------------------------------------------------------------


def aggregate(algo, rnd: int, uploads: dict[int, Message]) -> dict[int, Message]:
    """``algo.server_round`` on the uploads that arrived ({} when none did), decoded from the
    run's payload codec; the downloads are encoded (a message shared by several clients once)."""
    if not uploads:
        return {}
    c = codec(algo)
    with timing.part("server"):
        if c.identity:
            return algo.server_round(uploads, rnd)
        decoded = {cid: c.decode(m, f"client {cid}") for cid, m in uploads.items()}
        downloads = algo.server_round(decoded, rnd)
        encoded: dict[int, Message] = {}
        return {cid: encoded.setdefault(id(m), c.encode(m)) for cid, m in downloads.items()}


@contextlib.contextmanager
def naming_round(rnd: int, rounds: int):
    """A message refused in the block (by the server or a client) ends the run with one line
    that names the round (e.g. a divergence)."""
    try:
        yield
    except MessageError as e:
        if str(e).startswith("server: round"):  # the server's own errors name the round
            raise
        raise MessageError(f"round {rnd + 1} of {rounds}: {e}") from None


def round_row(
    cfg,
    rnd: int,
    part: Participation,
    losses: dict[int, float],
    weights: dict[int, int],
    uploads: dict[int, Message],
    downloads: dict[int, Message],
    *,
    extra: dict | None = None,
    always_ids: bool = False,
) -> dict:
    """The round's metrics row before evaluation: the sample-weighted mean training loss of the
    clients that trained (in client order), floats and bytes both ways, and, for a run that
    samples or drops clients (or ``always_ids``), who was aggregated and whose upload was lost.
    ``extra`` columns (e.g. the engine's ``off_mask_share``) come before those."""
    order = sorted(losses)
    row = {
        "round": rnd + 1,
        "train_loss": float(
            np.average([losses[c] for c in order], weights=[weights[c] for c in order])
        ),
        "upload_floats": sum(m.floats() for m in uploads.values()),
        "download_floats": sum(m.floats() for m in downloads.values()),
        "upload_bytes": sum(m.nbytes() for m in uploads.values()),
        "download_bytes": sum(m.nbytes() for m in downloads.values()),
        "test_acc": float("nan"),
    }
    row.update(extra or {})
    if always_ids or is_partial(cfg):
        row.update(clients=ids(uploads), dropped=ids(part.dropped))
    return row


def add_evaluation(
    row: dict,
    client_rows: list[dict],
    results: dict[int, tuple[int, int]],
    losses: dict[int, float],
) -> None:
    """Record an evaluation: ``results`` {client id: (correct, test samples)}; the round's
    accuracy is total correct / total test samples, and each client gets a clients.csv row
    (its training loss, NaN when it did not train this round)."""
    correct = tested = 0
    for cid in sorted(results):
        c, n = results[cid]
        correct, tested = correct + c, tested + n
        client_rows.append(
            {
                "round": row["round"],
                "client": cid,
                "test_acc": c / max(n, 1),
                "test_samples": n,
                "train_loss": losses.get(cid, float("nan")),
            }
        )
    if results:
        row["test_acc"] = correct / max(tested, 1)


def eval_round(cfg, done: int) -> bool:
    """Whether the round that makes ``done`` rounds evaluates every client."""
    return done % cfg.eval_every == 0 or done == cfg.rounds


def checkpoint_round(cfg, done: int, end: int) -> bool:
    """Whether a checkpoint is written after ``done`` rounds (``end``: where this call stops)."""
    return done < cfg.rounds and (
        bool(cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == end
    )


def last_round(cfg, stop_after: int | None) -> int:
    return cfg.rounds if stop_after is None else min(cfg.rounds, stop_after)


def run_round(S, clients, rnd: int, client_rows: list[dict], *, evaluate_now: bool = False) -> dict:
    """Round ``rnd`` of the run ``S`` (a ``runtime.setup.Setup``) whose clients are ``clients``
    (``runtime.clients``: in this process or in worker processes): the sampled clients train,
    the server aggregates what arrives, every client with a download stores it, and in an
    evaluation round (or with ``evaluate_now``) every client is evaluated. Returns the round's
    metrics row (no ``seconds``); grows ``client_rows``. The engine and the bench run this."""
    from tinyproto.config.participation import participation
    from tinyproto.cps import off_mask_share

    cfg, algo, data = S.config, S.algo, S.data
    part = participation(cfg, rnd)  # everyone, unless join_ratio < 1 or drop_rate > 0
    trained = clients.train(rnd, part.sampled)
    losses = {cid: trained[cid].loss for cid in part.sampled}
    weights = {cid: data[cid].num_train for cid in part.sampled}
    # a dropped client trained; its upload is lost
    uploads = {cid: trained[cid].upload for cid in part.sampled if cid not in part.dropped}
    with naming_round(rnd, cfg.rounds):
        downloads = aggregate(algo, rnd, uploads)
        clients.receive(downloads)
    extra = {}
    if algo.prototype_based:  # structure of the local prototypes (paper Fig. 2, App. A)
        local = [trained[cid].prototypes for cid in part.sampled]
        extra["off_mask_share"] = off_mask_share([p for p in local if p], S.share_masks)
    row = round_row(cfg, rnd, part, losses, weights, uploads, downloads, extra=extra)
    if evaluate_now or eval_round(cfg, rnd + 1):
        correct = clients.evaluate(range(len(data)))
        results = {cid: (correct[cid], d.num_test) for cid, d in enumerate(data)}
        add_evaluation(row, client_rows, results, losses)
    return row
