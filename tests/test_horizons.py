"""``finished`` reads runs without computing; ``side_by_side`` puts two profiles' runs of the
same grid beside each other (the notebooks' quick-vs-long view)."""

from __future__ import annotations

import json

import pytest

from tinyproto.store import runs_root
from tinyproto.sweep import finished, grid, side_by_side, sweep

SMALL = dict(
    dataset="synthetic",
    num_classes=4,
    num_clients=3,
    alpha=0.5,
    max_samples=120,
    feature_dim=8,
    save_prototypes=False,
)


def configs(profile, algorithms=("fedproto", "tinyproto-fp"), seeds=(0, 1)):
    rounds = {"smoke": 2, "quick": 3}[profile]
    return grid(
        profile=profile, algorithm=list(algorithms), seed=list(seeds), rounds=rounds, **SMALL
    )


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYPROTO_RESULTS", str(tmp_path))
    return tmp_path


def test_finished_computes_nothing_and_names_the_missing(results):
    cfgs = configs("smoke")
    done = sweep(cfgs[:2], progress=False, workers=1)
    rows = finished(cfgs)
    assert list(rows["run_id"]) == list(done["run_id"])
    assert rows["best_acc"].tolist() == done["best_acc"].tolist()
    assert rows.attrs["missing"] == [c.run_id() for c in cfgs[2:]]
    assert not (runs_root("smoke") / cfgs[2].run_id()).exists()  # nothing was started


def test_a_damaged_run_is_missing_not_read(results):
    cfg = configs("smoke", algorithms=("fedproto",), seeds=(0,))[0]
    sweep([cfg], progress=False, workers=1)
    summary = runs_root("smoke") / cfg.run_id() / "summary.json"
    data = json.loads(summary.read_text())
    data["best_acc"] = 2.0  # not a number the metrics can give
    summary.write_text(json.dumps(data))
    rows = finished([cfg])
    assert rows.empty and rows.attrs["missing"] == [cfg.run_id()]


def test_side_by_side_has_a_column_pair_per_profile_with_runs(results):
    sweep(
        configs("smoke") + configs("quick", algorithms=("fedproto",), seeds=(0,)),
        progress=False,
        workers=1,
    )
    table, rows = side_by_side(configs, by=["algorithm"], profiles=("smoke", "quick"))
    assert list(table.columns) == [
        "algorithm",
        "smoke: best acc (%)",
        "smoke: rounds",
        "quick: best acc (%)",
        "quick: rounds",
    ]
    t = table.set_index("algorithm")
    smoke = rows[rows.profile == "smoke"].groupby("algorithm")["best_acc"]
    assert t.loc["fedproto", "smoke: best acc (%)"].startswith(
        f"{100 * smoke.mean()['fedproto']:.2f} ± "
    )
    assert t.loc["fedproto", "smoke: best acc (%)"].endswith("(n=2)")
    assert t.loc["fedproto", "quick: rounds"] == 3 and t.loc["fedproto", "smoke: rounds"] == 2
    assert t.loc["tinyproto-fp", "quick: best acc (%)"] == "not run"
    q = rows[rows.profile == "quick"].iloc[0]
    assert t.loc["fedproto", "quick: best acc (%)"] == f"{100 * q.best_acc:.2f} (n=1)"


def test_side_by_side_leaves_out_profiles_without_runs(results):
    table, rows = side_by_side(configs, by=["algorithm"], profiles=("smoke", "quick"))
    assert table.empty and rows.empty


def test_flatten_round_definition():
    from tinyproto.sweep import flatten_round

    rise = [0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.85]
    curve = rise + [0.85] * 20
    r = flatten_round(curve, window=5, tol=0.005)
    # from round r on, the 5-round trailing mean never rises more than tol above its value at r
    ma = lambda k: sum(curve[k - 5 : k]) / 5  # noqa: E731  mean of rounds k-4..k
    assert all(ma(k) - ma(r) <= 0.005 + 1e-12 for k in range(r, len(curve) + 1))
    assert (
        ma(r) - ma(r - 1) > 0
        and max(ma(k) for k in range(r - 1, len(curve) + 1)) - ma(r - 1) > 0.005
    )
    assert flatten_round([0.1 * k for k in range(12)]) is None  # still rising at the horizon
    assert flatten_round([0.5, 0.6]) is None  # shorter than the window
    assert flatten_round([0.9] * 8) == 5


def test_flatten_round_skips_rounds_without_an_evaluation():
    import numpy as np
    import pandas as pd

    from tinyproto.sweep import flatten_round

    every = [0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.85] + [0.85] * 20
    dense = pd.Series(every, index=range(1, 31))
    sparse = dense.copy()
    sparse[sparse.index % 2 == 1] = np.nan  # eval_every=2: odd rounds have no accuracy
    r = flatten_round(sparse)
    assert r is not None and r % 2 == 0  # a round that was evaluated
    assert flatten_round(sparse) == flatten_round(dense[dense.index % 2 == 0])
    assert flatten_round(dense) == flatten_round(every)  # a Series and a list agree
    assert flatten_round(pd.Series([np.nan] * 10, index=range(1, 11))) is None


def test_order_since_skips_rounds_without_an_evaluation():
    import numpy as np
    import pandas as pd

    from tinyproto.scorecard.claims import order_since

    a = pd.Series([0.5, np.nan, 0.7, np.nan, 0.9], index=range(1, 6))
    b = pd.Series([0.6, np.nan, 0.6, np.nan, 0.8], index=range(1, 6))
    assert order_since(a, b) == (3, True)  # NaN rounds are not "not above"
