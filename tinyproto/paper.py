"""The paper's reference numbers, in one place (Lee & Choi, AAAI 2026, arXiv 2507.04327).

Constants typed from the paper (``../shared/papers/tinyproto-paper.txt``), never produced by this
package: Table 1 (accuracy and communication), Table 3 (scalability, heterogeneity), Appendix
Table 5 (CPS dim x scaling), and the APS constants of Sec. 5.1. The comm table, the notebooks and
the reproduction scorecard read them from here, so a number is typed once.

Accuracies are best test accuracy over 300 rounds in %, mean and std over 3 seeds (Ht0 models,
20 clients, Dirichlet 0.1 unless the table says otherwise). Communication is millions of floats
per round, all clients, both directions.
"""

from __future__ import annotations

import pandas as pd

DATASETS = ("cifar10", "cifar100", "tinyimagenet")
SETTING = dict(num_clients=20, alpha=0.1, partition_seed=1, feature_dim=500, rounds=300)

# APS scaling constants mu (Sec. 5.1), for the paper's full data sets.
MU = {
    ("tinyproto-fp", "cifar10"): 1.5e-4,
    ("tinyproto-fp", "cifar100"): 1.5e-3,
    ("tinyproto-fp", "tinyimagenet"): 1.5e-3,
    ("tinyproto-ft", "cifar10"): 1e-3,
    ("tinyproto-ft", "cifar100"): 1e-2,
    ("tinyproto-ft", "tinyimagenet"): 1e-2,
}

# Table 1: algorithm -> per dataset (acc mean, acc std, comm M), datasets in DATASETS order.
TABLE1 = {
    "lg-fedavg": ((86.91, 0.14, 0.20), (38.54, 0.21, 2.00), (22.30, 0.37, 4.00)),
    "fml": ((86.59, 0.15, 34.32), (37.83, 0.03, 36.12), (22.03, 0.12, 38.12)),
    "fedkd": ((87.10, 0.02, 30.66), (39.74, 0.42, 32.26), (23.08, 0.17, 34.05)),
    "feddistill": ((86.93, 0.12, 0.01), (39.52, 0.33, 0.29), (22.98, 0.15, 1.17)),
    "fedproto": ((82.90, 0.46, 0.15), (29.97, 0.18, 1.46), (13.30, 0.06, 2.93)),
    "fedtgp": ((86.32, 0.49, 0.15), (36.92, 0.16, 1.46), (19.44, 0.12, 2.93)),
    "tinyproto-fp": ((84.52, 0.06, 0.02), (31.82, 0.24, 0.15), (16.01, 0.21, 0.29)),
    "tinyproto-ft": ((88.47, 0.21, 0.02), (45.94, 0.40, 0.15), (27.29, 0.21, 0.29)),
}

# Table 3 (CIFAR-100): algorithm -> (50 clients, alpha 0.01, alpha 0.5), each (mean, std).
# The column order is inferred from stronger skew giving higher personalised accuracy.
TABLE3_SETTINGS = (
    dict(num_clients=50, alpha=0.1),
    dict(num_clients=20, alpha=0.01),
    dict(num_clients=20, alpha=0.5),
)
TABLE3 = {
    "lg-fedavg": ((37.47, 0.19), (66.75, 0.36), (20.87, 0.18)),
    "fml": ((37.61, 0.12), (64.29, 0.19), (20.66, 0.20)),
    "fedkd": ((38.39, 0.15), (66.08, 0.24), (20.94, 0.21)),
    "feddistill": ((40.70, 0.40), (60.11, 0.21), (22.28, 0.12)),
    "fedproto": ((29.36, 0.57), (58.98, 0.31), (12.88, 0.36)),
    "fedtgp": ((36.69, 0.15), (64.02, 0.34), (16.62, 0.28)),
    "tinyproto-fp": ((32.43, 0.31), (61.52, 0.54), (17.01, 0.45)),
    "tinyproto-ft": ((43.51, 0.35), (72.74, 0.59), (24.35, 0.11)),
}

# Appendix Table 5: (algorithm, CPS dim or None, scaling) -> per dataset (mean, std, comm M).
TABLE5 = {
    ("fedproto", None, False): ((82.90, 0.46, 0.15), (29.97, 0.18, 1.46), (13.30, 0.06, 2.93)),
    ("tinyproto-fp", 50, False): ((84.18, 0.71, 0.02), (29.27, 0.28, 0.15), (10.02, 0.24, 0.29)),
    ("tinyproto-fp", 150, False): ((84.24, 0.23, 0.05), (32.43, 0.52, 0.44), (14.25, 0.47, 0.88)),
    ("tinyproto-fp", 250, False): ((84.30, 0.16, 0.08), (33.00, 0.28, 0.73), (15.70, 0.47, 1.46)),
    ("tinyproto-fp", 350, False): ((84.07, 0.50, 0.11), (32.86, 0.34, 1.02), (16.45, 0.30, 2.05)),
    ("tinyproto-fp", 450, False): ((83.32, 0.18, 0.14), (31.58, 0.42, 1.31), (15.48, 0.24, 2.64)),
    ("tinyproto-fp", None, True): ((83.83, 0.22, 0.15), (34.94, 0.17, 1.46), (19.00, 0.03, 2.93)),
    ("tinyproto-fp", 50, True): ((84.52, 0.06, 0.02), (31.82, 0.24, 0.15), (16.01, 0.21, 0.29)),
    ("tinyproto-fp", 150, True): ((85.14, 0.17, 0.05), (34.87, 0.29, 0.44), (18.34, 0.25, 0.88)),
    ("tinyproto-fp", 250, True): ((85.07, 0.14, 0.08), (35.61, 0.10, 0.73), (18.74, 0.20, 1.46)),
    ("tinyproto-fp", 350, True): ((85.43, 0.24, 0.11), (35.25, 0.31, 1.02), (18.83, 0.10, 2.05)),
    ("tinyproto-fp", 450, True): ((85.26, 0.17, 0.14), (35.13, 0.16, 1.31), (19.07, 0.23, 2.64)),
    ("fedtgp", None, False): ((86.32, 0.49, 0.15), (36.92, 0.16, 1.46), (19.44, 0.12, 2.93)),
    ("tinyproto-ft", 50, False): ((85.91, 0.23, 0.02), (35.26, 0.25, 0.15), (18.51, 0.11, 0.29)),
    ("tinyproto-ft", 150, False): ((86.05, 0.20, 0.05), (36.05, 0.06, 0.44), (18.68, 0.19, 0.88)),
    ("tinyproto-ft", 250, False): ((86.03, 0.16, 0.08), (35.74, 0.69, 0.73), (18.74, 0.58, 1.46)),
    ("tinyproto-ft", 350, False): ((86.27, 0.09, 0.11), (35.57, 0.28, 1.02), (18.83, 0.15, 2.05)),
    ("tinyproto-ft", 450, False): ((85.93, 0.49, 0.14), (35.07, 0.25, 1.31), (16.45, 0.02, 2.64)),
    ("tinyproto-ft", None, True): ((88.40, 0.11, 0.15), (46.10, 0.24, 1.46), (26.82, 0.12, 2.93)),
    ("tinyproto-ft", 50, True): ((88.47, 0.21, 0.02), (45.94, 0.40, 0.15), (27.29, 0.21, 0.29)),
    ("tinyproto-ft", 150, True): ((88.56, 0.06, 0.05), (46.34, 0.05, 0.44), (27.41, 0.10, 0.88)),
    ("tinyproto-ft", 250, True): ((88.35, 0.27, 0.08), (46.36, 0.25, 0.73), (25.90, 0.09, 1.46)),
    ("tinyproto-ft", 350, True): ((88.55, 0.06, 0.11), (46.53, 0.17, 1.02), (25.59, 0.09, 2.05)),
    ("tinyproto-ft", 450, True): ((88.21, 0.21, 0.14), (45.59, 0.09, 1.31), (25.54, 0.04, 2.64)),
}

# Table 1's Comm column under the names the comm table uses for its rows.
COMM_ROWS = {
    "FedProto": "fedproto",
    "FedTGP": "fedtgp",
    "TinyProto(50)": "tinyproto-fp",
    "FedDistill": "feddistill",
    "LG-FedAvg (weights only)": "lg-fedavg",
    "LG-FedAvg (with bias)": "lg-fedavg",
    "FML": "fml",
    "FedKD": "fedkd",
}


def comm_m(row: str) -> tuple[float, float, float]:
    """Table 1's Comm column (M floats) for a comm-table row name, per dataset."""
    return tuple(v[2] for v in TABLE1[COMM_ROWS[row]])


def _text(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def table1(datasets: tuple[str, ...] = DATASETS) -> pd.DataFrame:
    """Table 1 as a frame: one row per algorithm, '<dataset> acc (%)' text and comm (M)."""
    rows = []
    for algo, per in TABLE1.items():
        row = {"algorithm": algo}
        for ds, (m, s, c) in zip(DATASETS, per):
            if ds in datasets:
                row[f"paper {_PRETTY[ds]} acc (%)"] = _text(m, s)
                row[f"paper {_PRETTY[ds]} comm (M)"] = c
        rows.append(row)
    return pd.DataFrame(rows)


def table1_long() -> pd.DataFrame:
    """Table 1, one row per (algorithm, dataset): acc_mean, acc_std, comm_M."""
    return pd.DataFrame(
        [
            dict(algorithm=a, dataset=ds, acc_mean=m, acc_std=s, comm_M=c)
            for a, per in TABLE1.items()
            for ds, (m, s, c) in zip(DATASETS, per)
        ]
    )


def table3() -> pd.DataFrame:
    """Table 3 (CIFAR-100) as a frame: one row per algorithm, the three settings' means."""
    names = ("paper: 50 clients", "paper: alpha 0.01", "paper: alpha 0.5")
    return pd.DataFrame(
        [{"algorithm": a, **{n: m for n, (m, _) in zip(names, per)}} for a, per in TABLE3.items()]
    )


def table3_long() -> pd.DataFrame:
    """Table 3, one row per (algorithm, setting): num_clients, alpha, acc_mean, acc_std."""
    return pd.DataFrame(
        [
            dict(algorithm=a, **setting, acc_mean=m, acc_std=s)
            for a, per in TABLE3.items()
            for setting, (m, s) in zip(TABLE3_SETTINGS, per)
        ]
    )


def table5_long() -> pd.DataFrame:
    """Appendix Table 5, one row per (algorithm, cps_dim, scaling, dataset)."""
    return pd.DataFrame(
        [
            dict(algorithm=a, cps_dim=s, scaling=sc, dataset=ds, acc_mean=m, acc_std=sd, comm_M=c)
            for (a, s, sc), per in TABLE5.items()
            for ds, (m, sd, c) in zip(DATASETS, per)
        ]
    )


_PRETTY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tinyimagenet": "TinyImageNet"}


# FedTiny's abstract (Huang et al., ICDCS 2023, arXiv 2212.01977; ../shared/papers/
# fedtiny-abstract.txt): its headline numbers against "state-of-the-art methods" (the best prior
# pruning method in its experiments). No per-density table was found (FEDTINY.md).
FEDTINY_ABSTRACT = {
    "accuracy_gain_pp": 2.61,  # accuracy improvement, percentage points
    "compute_reduction_pct": 95.91,  # computational cost reduction, %
    "memory_reduction_pct": 94.01,  # memory footprint reduction, %
}
