"""docs/privacy.md is computed: its generated blocks are what results/privacy/dp_tradeoff.py
renders from the committed CSVs (count_attack.csv, upload_norms.csv, dp_tradeoff.csv), its prose
quotes no number that is not in those blocks, and the script's helpers (the clip values chosen
from the upload norms, the usable clip, the tables) do what they say."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "results" / "privacy" / "dp_tradeoff.py"
DOC = ROOT / "docs" / "privacy.md"


@pytest.fixture(scope="module")
def dp():
    spec = importlib.util.spec_from_file_location("_dp_tradeoff", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def committed(dp):
    return (
        pd.read_csv(dp.OUT_CSV),
        pd.read_csv(dp.NORMS_CSV),
        pd.read_csv(dp.COUNT_CSV),
    )


# -- the doc against the CSVs ----------------------------------------------------------------


def test_doc_blocks_are_the_csvs_rendered(dp):
    text = DOC.read_text()
    df, norms, count = committed(dp)
    for name, body in dp.blocks(df, norms, count).items():
        assert dp.read_block(text, name) == body, (
            f"docs/privacy.md block {name!r} is stale: run "
            "`.venv/bin/python results/privacy/dp_tradeoff.py --table`"
        )


def test_prose_quotes_only_generated_numbers(dp):
    """A decimal number or percentage written by hand in the doc (outside the generated blocks
    and code) must be one the generated blocks show, so prose cannot drift from the CSVs."""
    text = DOC.read_text()
    generated = "\n".join(
        dp.read_block(text, n) for n in ("attack", "norms", "tradeoff", "verdict")
    )
    prose = text
    for name in ("attack", "norms", "tradeoff", "verdict"):
        start, end = dp.START.format(name=name), dp.END.format(name=name)
        i, j = prose.index(start), prose.index(end) + len(end)
        prose = prose[:i] + prose[j:]
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    prose = re.sub(r"`[^`]*`", "", prose)
    for num in re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", prose):
        assert num in generated, f"docs/privacy.md quotes {num}, which no generated block shows"


def test_csv_covers_the_grid_and_agrees_with_the_runs(dp):
    """Every row of dp_tradeoff.csv is its stored run's summary and its cached attack."""
    import json

    df = pd.read_csv(dp.OUT_CSV)
    assert set(df.profile) == {"quick"} and set(df.dataset) == {"fmnist"}
    assert not df.duplicated(["algorithm", "setting", "seed"]).any()
    assert set(df.seed) <= set(dp.SEEDS)
    for _, r in df.iterrows():
        folder = dp.RUNS / r.run_id
        if not folder.exists():  # run folders are not committed everywhere; the CSV still is
            continue
        s = json.loads((folder / "summary.json").read_text())
        assert s["best_acc"] == pytest.approx(r.best_acc) and s["seed"] == r.seed
        assert s.get("dp_epsilon", math.nan) == pytest.approx(r.dp_epsilon, nan_ok=True)
        att = pd.read_csv(dp.ATTACKS / f"{r.run_id}.csv")
        last = att[att["round"] == dp.ATTACK_ROUND]
        assert last.tvd_attack.mean() == pytest.approx(r.tvd_attack)
    norms = pd.read_csv(dp.NORMS_CSV)
    for alg, g in df.groupby("algorithm"):  # the clip-only settings are the norms' quantiles
        for name, clip, noise in dp.clip_settings(norms, alg):
            rows = g[g.setting == name]
            if clip is None:
                assert rows.dp_clip.isna().all()
            else:
                assert (rows.dp_clip == clip).all() and (rows.dp_noise == noise).all()
        clips = dp.clip_settings(norms, alg)  # the noise settings use the usable clip
        seed0 = g[g.seed == dp.NORM_SEED].set_index("setting").best_acc
        noised = g[g.dp_noise > 0]
        if len(noised):
            name, clip = dp.usable_clip(seed0.to_dict(), clips)
            assert (noised.dp_clip == clip).all() and noised.setting.str.startswith(
                name + " + "
            ).all()


def test_epsilon_column_is_the_accountant(dp):
    """The summary's epsilon equals tinyproto.comm.dp.epsilon over the run's rounds with the
    largest number of classes a client holds: inf for clipping alone, falling with sigma."""
    from tinyproto.comm import dp as mech

    df = pd.read_csv(dp.OUT_CSV)
    clip_only = df[df.dp_clip.notna() & (df.dp_noise == 0)]
    assert clip_only.dp_epsilon.map(math.isinf).all()
    noised = df[df.dp_noise > 0]
    for alg, g in noised.groupby("algorithm"):
        eps = g.groupby("dp_noise").dp_epsilon.first().sort_index()
        assert eps.is_monotonic_decreasing and (eps > 0).all()
        for sigma, e in eps.items():
            rows = [
                k
                for k in range(1, 11)
                if mech.epsilon(sigma, 15, k, mech.DELTA) == pytest.approx(e)
            ]
            assert rows, (alg, sigma, e)


# -- helpers ---------------------------------------------------------------------------------


def test_round_sig(dp):
    assert dp.round_sig(382.64) == 383.0
    assert dp.round_sig(0.44659) == 0.447
    assert dp.round_sig(15.4) == 15.4
    assert dp.round_sig(1859.3) == 1860.0
    assert dp.round_sig(0.0) == 0.0


def test_clip_settings_are_quantiles_of_the_norms(dp):
    norms = pd.DataFrame(
        {"algorithm": ["a"] * 11 + ["b"], "norm": [float(i) for i in range(11)] + [5.0]}
    )
    s = dp.clip_settings(norms, "a")
    assert s[0] == ("off", None, 0.0)
    assert [c for _, c, _ in s[1:]] == [9.0, 5.0, 1.0]  # 90th, 50th, 10th percentiles of 0..10
    assert [n for n, _, _ in s[1:]] == ["clip q90", "clip q50", "clip q10"]
    with pytest.raises(ValueError):
        dp.clip_settings(norms, "c")
    st = dp.norm_stats(norms)
    assert (
        st.set_index("algorithm").loc["a", "q50"] == 5.0
        and st.set_index("algorithm").loc["a", "rows"] == 11
    )


def test_usable_clip_is_the_smallest_that_keeps_accuracy(dp):
    clips = [
        ("off", None, 0.0),
        ("clip q90", 9.0, 0.0),
        ("clip q50", 5.0, 0.0),
        ("clip q10", 1.0, 0.0),
    ]
    base = {"off": 0.80, "clip q90": 0.795, "clip q50": 0.785, "clip q10": 0.30}
    assert dp.usable_clip(base, clips) == ("clip q50", 5.0)
    base["clip q50"] = 0.70
    assert dp.usable_clip(base, clips) == ("clip q90", 9.0)
    base["clip q90"] = 0.10  # none usable: the largest clip
    assert dp.usable_clip(base, clips) == ("clip q90", 9.0)
    names = [n for n, _, _ in dp.noise_settings("clip q90", 9.0)]
    assert names == [f"clip q90 + noise {s:g}" for s in dp.NOISES]


def test_tables_show_mean_and_std_over_seeds(dp):
    df = pd.DataFrame(
        {
            "algorithm": ["x", "x", "x"],
            "setting": ["off", "off", "clip q50"],
            "dp_clip": [math.nan, math.nan, 2.0],
            "dp_noise": [0.0, 0.0, 0.0],
            "seed": [0, 1, 0],
            "best_acc": [0.80, 0.82, 0.5],
            "last_acc": [0.79, 0.81, 0.4],
            "dp_epsilon": [math.nan, math.nan, math.inf],
            "tvd_attack": [0.1, 0.3, 0.5],
            "tvd_presence": [0.5, 0.5, 0.5],
            "spearman": [0.9, 0.7, 0.1],
            "upload_bytes_per_round": [100.0, 100.0, 100.0],
        }
    )
    lines = dp.tradeoff_table(df).splitlines()
    assert len(lines) == 4
    assert "| x | off | - | - | 0,1 | 81.0 ± 1.4 | 80.0 ± 1.4 | - | 0.200 ± 0.141 |" in lines[2]
    assert "| x | clip q50 | 2 | 0 | 0 | 50.0 | 40.0 | ∞ | 0.500 |" in lines[3]


def test_fill_replaces_only_the_block(dp):
    text = "a\n" + dp.START.format(name="t") + "\nold\n" + dp.END.format(name="t") + "\nb\n"
    new = dp.fill(text, "t", "new\nlines")
    assert dp.read_block(new, "t") == "new\nlines"
    assert new.startswith("a\n") and new.endswith("\nb\n")


def test_upload_norms_on_a_smoke_run(dp):
    """The norms the clip values come from are those of the rows the server receives: as many
    rows as classes uploaded, positive, and (APS) far more spread for TinyProto-FP than for
    FedProto's unscaled means."""
    from tinyproto import Config

    base = dict(profile="smoke", rounds=1, alpha=1.0, num_clients=4, client_workers=1)
    fp = dp.upload_norms(Config(algorithm="tinyproto-fp", **base), 1)
    fedproto = dp.upload_norms(Config(algorithm="fedproto", **base), 1)
    assert set(fp.columns) == {"algorithm", "round", "client", "cls", "norm"}
    assert sorted(fp.client.unique()) == [0, 1, 2, 3] and (fp.norm >= 0).all()
    assert len(fp) == len(fedproto)
    spread = lambda g: g.norm.quantile(0.9) / g.norm.quantile(0.1)  # noqa: E731
    assert spread(fp) > 3 * spread(fedproto)


def test_doc_states_the_profile_and_the_scripts_rules(dp):
    """The scope's `key=value` facts are the quick profile's resolved config, and the rules the
    prose describes (quantiles, rounds measured, accuracy tolerance, attack round, delta) are
    the script's and the accountant's constants."""
    from tinyproto import Config
    from tinyproto.comm import dp as mech

    text = DOC.read_text()
    cfg = Config(algorithm="fedproto", profile=dp.PROFILE)
    facts = re.findall(r"`(\w+)=([\w.]+)`", text)
    assert len(facts) >= 6
    for key, value in facts:
        assert str(getattr(cfg, key)) == value, (key, value, getattr(cfg, key))
    assert f"`{dp.PROFILE}` profile" in text
    pct = ", ".join(f"{round(100 * q)}th" for q in dp.CLIP_QUANTILES)
    assert f"({pct} percentile)" in text
    assert f"rounds 1 to {dp.NORM_ROUNDS}" in text and f"(seed {dp.NORM_SEED};" in text
    assert f"at most {round(100 * dp.ACC_TOLERANCE)} points" in text
    assert f"at round {dp.ATTACK_ROUND}" in text
    assert f"delta = {dp.sci(mech.DELTA)}" in text
    assert "seeds " + ", ".join(map(str, dp.SEEDS)) in text


def test_prose_claims_hold(dp):
    """The sentences of 'How to read it' and 'Why clipping and APS do not mix', on the CSV."""
    df = pd.read_csv(dp.OUT_CSV)
    g = df.groupby(["algorithm", "setting"], sort=False).agg(
        acc=("best_acc", "mean"),
        tvd=("tvd_attack", "mean"),
        pres=("tvd_presence", "mean"),
        spear=("spearman", "mean"),
        eps=("dp_epsilon", "first"),
    )
    for alg in df.algorithm.unique():
        a = g.loc[alg]
        off = a.loc["off"]
        noised = a[a.eps.map(math.isfinite)]
        if noised.empty:
            continue
        strongest = noised.loc[noised.eps.idxmin()]
        assert strongest.eps > 10, (alg, strongest)  # far above the single digits
        keep = noised[noised.acc >= off.acc - dp.ACC_TOLERANCE]
        if alg == "feddistill":  # the exception: accuracy kept at every noise
            assert len(keep) == len(noised), (alg, noised)
            continue
        assert strongest.acc < 3 / 10, (alg, strongest)  # below 3 times chance
        assert (keep.eps >= 1000).all(), (alg, keep)  # thousands or more
    fp = g.loc["tinyproto-fp"]
    off = fp.loc["off"]
    clip_only = fp[fp.eps.map(math.isinf)]
    hide = clip_only[clip_only.tvd >= dp.HIDDEN * clip_only.pres]
    keep = clip_only[clip_only.acc >= off.acc - dp.ACC_TOLERANCE]
    # clipping hides the counts only where it also removes what the server needs
    assert len(hide) and (hide.acc < off.acc - 0.2).all(), hide
    # a clip that keeps the accuracy leaves the ranks of the counts visible
    assert len(keep) and (keep.tvd < 0.5 * keep.pres).all() and (keep.spear > 0.8).all(), keep
    offs = df[df.setting == "off"]  # 'Scope': short runs, FedProto's seeds apart
    assert (offs.best_acc == offs.last_acc).mean() > 0.5
    fedproto = offs[offs.algorithm == "fedproto"].best_acc
    assert fedproto.max() - fedproto.min() >= 0.03
    for alg in ("fedproto", "feddistill"):  # leak only the class list to begin with
        if alg in g.index.get_level_values(0):
            o = g.loc[(alg, "off")]
            assert o.tvd >= dp.HIDDEN * o.pres, (alg, o)


def test_attack_section_claims_hold(dp):
    """'The attack' section's sentences on count_attack.csv (quick profile, last round)."""
    count = pd.read_csv(dp.COUNT_CSV)
    q = count[count.profile == dp.PROFILE]
    m = q[q["round"] == q["round"].max()].groupby("algorithm").mean(numeric_only=True)
    for alg in ("fedproto", "fedtgp", "feddistill"):
        assert abs(m.loc[alg, "tvd_attack"] - m.loc[alg, "tvd_presence"]) < 0.05, alg
    for alg in ("tinyproto-fp", "tinyproto-ft"):
        assert m.loc[alg, "tvd_attack"] < 0.5 * m.loc[alg, "tvd_presence"], alg
        assert m.loc[alg, "spearman"] > 0.9, alg
    guesses = q.groupby(["algorithm", "seed", "client"])[["tvd_presence", "tvd_blind"]].first()
    assert (guesses.groupby(["algorithm", "client"]).std() < 1e-12).all().all()


def test_secure_aggregation_rows_are_secure_runs_without_dp(dp):
    """The "secure aggregation" setting: runs with secure_agg and no DP, whose attack reads
    masked tables (every class uploaded: the presence guess is the blind one)."""
    import json

    df = pd.read_csv(dp.OUT_CSV)
    sec = df[df.setting == dp.SECURE]
    assert set(sec.algorithm) >= {"tinyproto-fp"} and sec.secure_agg.all()
    assert not df[df.setting != dp.SECURE].secure_agg.any()
    assert sec.dp_clip.isna().all() and (sec.dp_noise == 0).all()
    assert (sec.tvd_presence == sec.tvd_blind).all()
    for _, r in sec.iterrows():
        folder = dp.RUNS / r.run_id
        if folder.exists():
            assert json.loads((folder / "config.json").read_text())["secure_agg"] is True
