"""FedTiny's options (../shared/FEDTINY.md): the group, its command-line flags and its checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyproto.config.profiles import COUNT_MAX, DATASET_CLASSES, DATASET_SIZES

# flat names (CLI flags, config.json) that differ from the field names
FLAT_NAMES = {"candidates": "fedtiny_candidates", "shots": "fedtiny_shots"}


@dataclass(frozen=True)
class FedTinyOptions:
    """FedTiny; defaults are the authors' code's (FEDTINY.md), density the issue's."""

    density: float = 0.01  # target share of the masked weights kept
    mask_init: str = "abns"  # abns | select (ABNS off) | magnitude (one-shot, no candidates)
    progressive: bool = True  # progressive pruning (prune/grow adjustments) on
    prune_mode: str = "block"  # block: one block per adjustment, output first | entire
    candidates: int = 5  # C, the candidate pool
    shots: int = 5  # server-side labelled images per class
    pretrain_epochs: int = 3  # server pre-training epochs on them
    abns_passes: int = 10  # forward passes over the validation set per candidate
    adjust_every: int = 10  # dT
    adjust_until: int = 100  # T_max
    adjust_rate: float = 0.1  # a, the cosine schedule's initial rate

    def problems(self, dataset: str, max_samples: int | None) -> list[tuple[str, object, str]]:
        """(flat name, value, what is allowed) for each option set away from its default that
        this variant never reads (refused like any option an algorithm does not read), and for
        a real data set without room for the server's few-shot set outside the partition."""
        base, out = FedTinyOptions(), []
        unused = []
        if self.mask_init == "magnitude":
            unused += [(n, "mask_init=magnitude has no candidate pool") for n in ("candidates",)]
        if self.mask_init != "abns":
            unused.append(("abns_passes", f"mask_init={self.mask_init} runs no ABNS"))
        if not self.progressive:
            names = ("prune_mode", "adjust_every", "adjust_until", "adjust_rate")
            unused += [(n, "progressive pruning is off") for n in names]
        elif self.adjust_until < self.adjust_every:  # adjustment rounds: every dT up to T_max
            why = (
                f"adjust_until={self.adjust_until} < adjust_every={self.adjust_every} leaves no "
                "adjustment round"
            )
            unused += [(n, why) for n in ("prune_mode", "adjust_rate")]
        for n, why in unused:
            if getattr(self, n) != getattr(base, n):
                out.append(
                    (FLAT_NAMES.get(n, n), getattr(self, n), f"{why}; leave it at its default")
                )
        if dataset in DATASET_SIZES:
            full, K = DATASET_SIZES[dataset], DATASET_CLASSES[dataset]
            room = full - self.shots * K
            if max_samples is None or max_samples > room:
                why = (
                    f"at most {room} for fedtiny: its server holds fedtiny_shots x {K} = "
                    f"{self.shots * K} images of {dataset} that no client holds"
                )
                out.append(("max_samples", max_samples, why))
        return out


# flat name -> (kind, help, bounds) for tinyproto.config.PARAMS (the CLI and validation)
FEDTINY_FLAGS: dict[str, tuple[str, str, dict]] = {
    "density": (
        "float",
        "share of the masked weights kept (every conv/linear weight but the first conv)",
        dict(low=0, high=1, low_open=True),
    ),
    "mask_init": (
        "choice",
        "initial mask: abns (candidate pool + adaptive BN selection), select "
        "(the pool without ABNS), magnitude (one-shot magnitude pruning of the "
        "pre-trained model)",
        dict(choices=("abns", "select", "magnitude")),
    ),
    "progressive": ("bool", "progressive pruning: prune/grow adjustment rounds", {}),
    "prune_mode": (
        "choice",
        "layers adjusted per adjustment round: block (one block, output first) or entire",
        dict(choices=("block", "entire")),
    ),
    "fedtiny_candidates": ("int", "candidate masks C in the pool", dict(low=1, high=1000)),
    "fedtiny_shots": (
        "int",
        "labelled images per class the server holds (from data no client holds)",
        dict(low=1, high=100_000),
    ),
    "pretrain_epochs": (
        "int",
        "server pre-training epochs on its few-shot set",
        dict(low=0, high=100_000),
    ),
    "abns_passes": (
        "int",
        "ABNS forward passes over a client's validation set per candidate",
        dict(low=1, high=100_000),
    ),
    "adjust_every": (
        "int",
        "dT: adjust the mask in the round after every dT-th training round",
        dict(low=1, high=COUNT_MAX),
    ),
    "adjust_until": (
        "int",
        "T_max: no adjustment after this many training rounds",
        dict(low=0, high=COUNT_MAX),
    ),
    "adjust_rate": (
        "float",
        "a: the first adjustment's share of a layer's kept weights (cosine decay)",
        dict(low=0, high=1, low_open=True),
    ),
}
FIELDS = {FLAT_NAMES.get(f, f): f for f in asdict(FedTinyOptions())}  # flat name -> field
