"""The communication and cost claims: the 10x cut, the two abstracts, FedDistill's 4x, prototype
exchange against FedAvg, Fig. 4's floats against d, and the client-side overhead (FLOPs and
benched time)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tinyproto.config import ConfigError
from tinyproto.scorecard.claims.base import (
    FEDAVG,
    FEDDISTILL,
    FEDPROTO,
    FEDTGP,
    FIG4_DIMS,
    FP,
    FT,
    _by_seed_pairs,
    _comm_ratio,
    _common,
    _fmt_ratio,
    _num_classes,
    _row,
)
from tinyproto.scorecard.rules import (
    MIN_SEEDS,
    NOT_ENOUGH,
    Arm,
    Runs,
    arm,
    judge,
    paired_interval,
    weakest,
)


def _fig4_comm_row(runs: Runs) -> dict:
    """Fig. 4 / Sec. 5.2, the communication half: "While LG-FedAvg and PBFL are impacted by
    [d], TinyProto shows minimal sensitivity". With s = d/10 TinyProto's floats grow with d in
    the same proportion as FedProto's; the figure plots absolute cost, where TinyProto-FT's
    increase from d = 100 to 1000 is s/d of FedProto's. Holds if that absolute increase, measured
    in the runs (floats per round, seed means), is at most a fifth of FedProto's; the relative
    growth of both is reported beside."""
    lo, hi = FIG4_DIMS[0], FIG4_DIMS[-1]
    got = {}
    ids = []
    for name, algo in (("TinyProto-FT", "tinyproto-ft"), ("FedProto", "fedproto")):
        for d in (lo, hi):
            m = runs.arm(arm(f"{name} d={d}", algo, feature_dim=d))
            ids += m.ids
            got[name, d] = (
                np.mean([s_["comm_floats_per_round"] for s_ in m.summaries])
                if m.summaries
                else None
            )
    claim = (
        "TinyProto's communication is barely affected by the decision layer's size d, unlike "
        "FedProto's"
    )
    source, paper_text = "Fig. 4 / Sec. 5.2", "minimal sensitivity (figure only)"
    if any(v is None for v in got.values()):
        return _row(claim, source, paper_text, runs, "missing runs", "not measured", ids, 0, FT)
    up = {n: got[n, hi] - got[n, lo] for n in ("TinyProto-FT", "FedProto")}
    share = up["TinyProto-FT"] / up["FedProto"] if up["FedProto"] else math.inf
    ours = (
        f"floats per round from d = {lo} to {hi}: TinyProto-FT {got['TinyProto-FT', lo]:.0f} -> "
        f"{got['TinyProto-FT', hi]:.0f} (+{up['TinyProto-FT']:.0f}), FedProto "
        f"{got['FedProto', lo]:.0f} -> {got['FedProto', hi]:.0f} (+{up['FedProto']:.0f}); "
        f"TinyProto-FT's increase is {share:.3f} of FedProto's (bar: at most 0.2); relative "
        f"growth x{got['TinyProto-FT', hi] / got['TinyProto-FT', lo]:.2f} vs "
        f"x{got['FedProto', hi] / got['FedProto', lo]:.2f}: with s = d/10 both grow in proportion "
        "to d, so the claim holds in absolute floats only"
    )
    verdict = "holds" if share <= 0.2 else "does not hold"
    return _row(claim, source, paper_text, runs, ours, verdict, ids, 1, FT)


def _comm_row(runs: Runs) -> dict:
    """The 10x cut: FedProto's floats per round over TinyProto-FP's equal d/s exactly, in every
    seed both arms ran (paired by seed)."""
    mp, mt = runs.arm(FEDPROTO), runs.arm(FP)
    cfg = FP.config(runs.profile, 0)
    want = cfg.feature_dim / cfg.cps_dim
    pairs = [
        (p["comm_floats_per_round"], t["comm_floats_per_round"]) for p, t in _by_seed_pairs(mp, mt)
    ]
    exact = [p == t * want for p, t in pairs]
    if pairs:
        p, t = pairs[0]
        ours = f"ratio {p / t:.6f} ({p:.0f} vs {t:.0f} floats per round); exact in {sum(exact)} of {len(exact)} seeds"
    else:
        ours = "missing runs"
    verdict = ("holds" if all(exact) else "does not hold") if pairs else "not measured"
    return _row(
        f"TinyProto-FP cuts FedProto's communication by d/s = {want:g}",
        "Table 1 / Table 2",
        "0.15 M vs 0.02 M floats per round (CIFAR-10)",
        runs,
        ours,
        verdict,
        mp.ids + mt.ids,
        len(pairs),
        FP,
    )


def _abstract_rows(runs: Runs, cut: str, fp: Arm = FP, ft: Arm = FT, mark: str = "") -> list[dict]:
    """The two versions of the headline: arXiv v1's abstract ("up to 4x ... while maintaining
    performance") and the AAAI 2026 version ("up to 10x ... while enhancing performance"), whose
    communication part is the 10x row's verdict ``cut`` (every variant sends the same floats);
    judged for the variant ``fp``, ``ft`` (its claims end with ``mark``)."""
    mfp, mft, mpro, mtgp, mdist = (runs.arm(x) for x in (fp, ft, FEDPROTO, FEDTGP, FEDDISTILL))
    ids = mfp.ids + mft.ids + mpro.ids + mtgp.ids + mdist.ids
    ratio10 = _comm_ratio(mpro, mfp)
    ratio4 = _comm_ratio(mdist, mft)
    rows = []
    keep = [judge(runs, mfp, mpro, "not_worse"), judge(runs, mft, mtgp, "not_worse")]
    four = "not measured" if ratio4 is None else ("holds" if ratio4 >= 4 else "does not hold")
    rows.append(
        _row(
            "Up to 4x less communication than existing methods, maintaining accuracy" + mark,
            "Abstract (arXiv v1)",
            "4x vs FedDistill at 200 classes; accuracy kept",
            runs,
            f"FedDistill / TinyProto-FT floats per round {_fmt_ratio(ratio4)}; {fp.label} not "
            f"worse than FedProto: {keep[0]}; {ft.label} not worse than FedTGP: {keep[1]}",
            weakest([four, *keep]),
            ids,
            _common(mfp, mft, mpro, mtgp),
            ft,
        )
    )
    better = [judge(runs, mfp, mpro), judge(runs, mft, mtgp)]
    rows.append(
        _row(
            "Up to 10x less communication than FedProto, improving accuracy" + mark,
            "Abstract (AAAI 2026); Sec. 1 contributions",
            "10x (d/s); TinyProto-FP > FedProto, TinyProto-FT > FedTGP",
            runs,
            f"FedProto / TinyProto-FP floats per round {_fmt_ratio(ratio10)}; {fp.label} > "
            f"FedProto: {better[0]}; {ft.label} > FedTGP: {better[1]}",
            weakest([cut, *better]),
            ids,
            _common(mfp, mft, mpro, mtgp),
            fp,
        )
    )
    return rows


def _feddistill_comm_row(runs: Runs) -> dict:
    """Sec. 5.2: "up to 4x reduction in communication costs compared to FedDistill". Per
    client and class held, FedDistill sends K logits each way, TinyProto s floats: TinyProto
    sends less only when K > s, and 4x less at K = 4s (200 classes at s = 50: TinyImageNet)."""
    mft, mdist = runs.arm(FT), runs.arm(FEDDISTILL)
    r = _comm_ratio(mdist, mft)
    try:
        cfg = FT.config(runs.profile, 0)
        s_, K = cfg.cps_dim, _num_classes(cfg)
    except ConfigError:
        s_, K = None, None
    where = (
        f"; closed form: FedDistill / TinyProto = K / s = {K}/{s_} = {K / s_:.2f} here, "
        f"TinyProto sends less only for K > {s_} classes, 4x less at K = {4 * s_}"
        if s_
        else ""
    )
    verdict = "not measured" if r is None else ("holds" if r >= 4 else "does not hold")
    ours = f"FedDistill / TinyProto-FT floats per round {_fmt_ratio(r)} (measured){where}"
    if r is not None and r < 1:
        ours += f"; on this profile TinyProto-FT sends {1 / r:.1f}x more than FedDistill"
    return _row(
        "Up to 4x less communication than FedDistill (TinyProto-FT)",
        "Sec. 5.2 / Table 1; Abstract (arXiv v1); Sec. 6",
        "4x at TinyImageNet (200 classes); FedDistill cheapest on CIFAR-10",
        runs,
        ours,
        verdict,
        mft.ids + mdist.ids,
        _common(mft, mdist),
        FT,
    )


PBFL_CHEAP = 0.1  # "significantly lower than FedAvg": at most a tenth of its floats


def _pbfl_vs_fedavg_comm_row(runs: Runs) -> dict:
    """Sec. 1 / Fig. 1: PBFL's communication, K x d, is "significantly lower than FedAvg when
    these factors are small". Measured floats per round (seed means) of FedProto against
    FedAvg's (the whole model each way); holds if at most a tenth. The K x d product at which
    they would cost the same is reported: beyond it the advantage is gone (the paper's point)."""
    mpro, mavg = runs.arm(FEDPROTO), runs.arm(FEDAVG)
    r = _comm_ratio(mpro, mavg)
    claim = "Prototype exchange costs far less than FedAvg's at small K and d"
    source, paper_text = "Sec. 1 / Fig. 1", "significantly lower than FedAvg when K and d are small"
    if r is None:
        return _row(
            claim, source, paper_text, runs, "missing runs", "not measured", [], 0, FEDPROTO
        )
    cfg = FEDPROTO.config(runs.profile, 0)
    K, d = _num_classes(cfg), cfg.feature_dim
    fa = np.mean([s_["comm_floats_per_round"] for s_ in mavg.summaries])
    fp = np.mean([s_["comm_floats_per_round"] for s_ in mpro.summaries])
    ours = (
        f"floats per round FedProto {fp:.0f} vs FedAvg {fa:.0f}: ratio {r:.4f} (bar: at most "
        f"{PBFL_CHEAP:g}) at K = {K}, d = {d}; the two would cost the same at about {1 / r:.0f}x "
        "the K x d product"
    )
    return _row(
        claim,
        source,
        paper_text,
        runs,
        ours,
        "holds" if r <= PBFL_CHEAP else "does not hold",
        mpro.ids + mavg.ids,
        _common(mpro, mavg),
        FEDPROTO,
    )


OVERHEAD_MAX = 0.01  # "no client-side computational overhead": at most 1 % more FLOPs ...


OVERHEAD_TIME_MAX = 0.10  # ... and at most 10 % more client time (the 90 % interval's upper end)


OVERHEAD_CSV = Path("overhead") / "client_time.csv"  # under the results root (measure.py)


def client_time_ratio(table: pd.DataFrame, profile: str):
    """TinyProto-FP's client time over FedProto's on ``profile``, from the bench table
    (results/overhead/client_time.csv): per repetition, the ratio of the two algorithms' client
    seconds, benched back to back; their geometric mean with a two-sided 90 % t interval over
    repetitions. (ratio, lo, hi, n), or None without rows. (The bare loop's seconds, also in the
    table, are no normaliser: it runs on every core, the clients on one, so a loaded machine
    slows the two differently.)"""
    need = {"profile", "algorithm", "rep", "client_seconds_per_round"}
    if not need <= set(table.columns):
        raise KeyError(f"columns {', '.join(sorted(need - set(table.columns)))} missing")
    t = table[table["profile"] == profile]
    wide = t.pivot_table(index="rep", columns="algorithm", values="client_seconds_per_round")
    if not {"fedproto", "tinyproto-fp"} <= set(wide.columns):
        return None
    logs = np.log((wide["tinyproto-fp"] / wide["fedproto"]).dropna().to_numpy())
    if logs.size == 0:
        return None
    mean, lo, hi, n = paired_interval(dict(enumerate(logs)), dict.fromkeys(range(logs.size), 0.0))
    return float(np.exp(mean)), float(np.exp(lo)), float(np.exp(hi)), n


def _overhead_row(runs: Runs) -> dict:
    """Abstract (arXiv v1): "achieving compression without client-side computational
    overhead". TinyProto-FP vs FedProto per client per round, on both counts:
    - the counted training FLOPs (algorithms.compute: the model's layers; CPS adds one K x d
      mask product per batch), from the runs: at most 1 % more;
    - the measured client time, from results/overhead/client_time.csv (measure.py: the two
      benched back to back, order alternating): the 90 % interval of the ratio at most 1.10.
    Holds if both do; does not hold if the FLOPs exceed the bar or the time's interval lies
    above it; otherwise inconclusive. The runs' own seconds per round are reported, not judged
    (they shared the CPU)."""
    from tinyproto.store import results_root

    mfp, mpro = runs.arm(FP), runs.arm(FEDPROTO)
    claim = "No client-side computational overhead (TinyProto-FP vs FedProto)"
    source = "Abstract (arXiv v1); Sec. 6"
    if not mfp.summaries or not mpro.summaries:
        return _row(claim, source, "none", runs, "missing runs", "not measured", [], 0, FP)
    flops = [s.get("client_train_flops_mean") for s in mfp.summaries + mpro.summaries]
    if any(f is None for f in flops):
        return _row(claim, source, "none", runs, "FLOPs not recorded", "not measured", [], 0, FP)
    f_fp = np.mean([s["client_train_flops_mean"] for s in mfp.summaries])
    f_pro = np.mean([s["client_train_flops_mean"] for s in mpro.summaries])
    t_fp = {s["seed"]: s["seconds_per_round"] for s in mfp.summaries}
    t_pro = {s["seed"]: s["seconds_per_round"] for s in mpro.summaries}
    common = sorted(set(t_fp) & set(t_pro))
    ratio_t = np.mean([t_fp[k] / t_pro[k] for k in common]) if common else float("nan")
    over = f_fp / f_pro - 1
    n = _common(mfp, mpro)
    path = results_root() / OVERHEAD_CSV
    unreadable = None
    try:
        timed = client_time_ratio(pd.read_csv(path), runs.profile) if path.is_file() else None
    except (ValueError, KeyError, pd.errors.ParserError) as e:  # a damaged table: said, not judged
        why = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)  # no repr quotes
        timed, unreadable = None, " ".join(why.split())[:120]
    bar = 1 + OVERHEAD_TIME_MAX
    if unreadable is not None:
        time_text = f"client time: results/{OVERHEAD_CSV.as_posix()} unreadable ({unreadable})"
        time_verdict = "not measured"
    elif timed is None:
        time_text = f"client time: no {runs.profile} rows in results/{OVERHEAD_CSV.as_posix()}"
        time_verdict = "not measured"
    else:
        r, lo, hi, k = timed
        time_text = (
            f"client time (results/{OVERHEAD_CSV.as_posix()}, benched back to back): "
            f"TinyProto-FP / FedProto {r:.3f}, 90 % CI [{lo:.3f}, "
            f"{hi:.3f}], {k} repetitions (bar: at most {bar:.2f})"
        )
        time_verdict = (
            NOT_ENOUGH
            if k < MIN_SEEDS
            else ("holds" if hi <= bar else "does not hold" if lo > bar else "inconclusive")
        )
    flops_verdict = "holds" if over <= OVERHEAD_MAX else "does not hold"
    verdict = weakest([flops_verdict, time_verdict])
    if n < MIN_SEEDS:
        verdict = NOT_ENOUGH
    ours = (
        f"client training FLOPs per round {f_fp:.4g} vs {f_pro:.4g} ({100 * over:+.2f} %, bar: "
        f"at most {100 * OVERHEAD_MAX:g} %): {flops_verdict}; {time_text}: {time_verdict}; the "
        f"runs' seconds per round, TinyProto-FP / FedProto {ratio_t:.2f} (paired mean; the runs "
        "shared the CPU: not judged)"
    )
    return _row(claim, source, "none", runs, ours, verdict, mfp.ids + mpro.ids, n, FP)
