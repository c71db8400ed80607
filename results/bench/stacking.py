"""Can same-architecture clients be stacked into one step without changing the numbers?

    .venv/bin/python results/bench/stacking.py            # writes results/bench/stacking-<UTC time>.csv

Issue 22 asks to batch what scales (MobileNetV2 costs less per sample at batch 160 than at
batch 32) only if the numbers stay those of the sequential path. For each Ht0 architecture and
cnn_c (28x28x1 inputs, d = 500, 10 classes, one torch thread, as every run computes), five
clients (five models, seeds 0-4, train mode) each take one batch of 32:

* ``sequential_ms``: forward + cross-entropy + backward of the five, one after another;
* ``stacked_ms``: the same five in one call, ``torch.func.vmap`` over their stacked parameters
  and buffers (``stack_module_state`` + ``functional_call``; batch norm uses each client's own
  batch statistics, as in the sequential path); the medians of ``REPEATS`` interleaved timings,
  and ``gain`` = sequential / stacked;
* ``grads_equal``: whether the stacked gradients are bit-identical to the sequential ones for
  every parameter of every client, and ``max_abs_diff`` their largest difference (or the error
  class when vmap refuses the model).

Measured, not adopted when the gradients differ: a stacked step would change a run's numbers.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from tinyproto.models import HT0, build_model

REPEATS = 5
ARCHS = (*HT0, "cnn_c")
CLIENTS = 5


def _model(arch: str, seed: int):
    torch.manual_seed(seed)
    return build_model(arch, num_classes=10, feature_dim=500, in_channels=1, image_size=28)


def _sequential(models, xs, ys):
    grads = []
    for m, x, y in zip(models, xs, ys):
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m(x)[1], y).backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
    return grads


def _stacked_fn(models):
    import copy

    from torch.func import functional_call, grad, stack_module_state, vmap

    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)

    def loss(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,))[1], y)

    step = vmap(grad(loss), in_dims=(0, 0, 0, 0), randomness="different")
    return lambda xs, ys: step(params, buffers, xs, ys)


def _ms(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return 1e3 * (time.perf_counter() - t0)


def main() -> int:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(CLIENTS, 32, 1, 28, 28, generator=gen)
    ys = torch.randint(0, 10, (CLIENTS, 32), generator=gen)
    rows = []
    for arch in ARCHS:
        models = [_model(arch, s).train() for s in range(CLIENTS)]
        row = dict(arch=arch, threads=torch.get_num_threads(), clients=CLIENTS, batch=32)
        try:
            stacked = _stacked_fn(models)
            with torch.random.fork_rng():
                torch.manual_seed(1)
                got = stacked(xs, ys)
        except Exception as e:  # noqa: BLE001 (the measured outcome)
            row.update(grads_equal=False, max_abs_diff=float("nan"), vmap=type(e).__name__)
            rows.append(row)
            print(row, flush=True)
            continue
        with torch.random.fork_rng():
            torch.manual_seed(1)
            ref = _sequential(models, xs, ys)
        diff, equal = 0.0, True
        for i, g in enumerate(ref):
            for k, v in g.items():
                equal &= torch.equal(v, got[k][i])
                diff = max(diff, (v - got[k][i]).abs().max().item())
        seq, stk = [], []
        for _ in range(REPEATS):  # interleaved
            seq.append(_ms(_sequential, models, xs, ys))
            stk.append(_ms(stacked, xs, ys))
        row.update(
            vmap="ok",
            grads_equal=bool(equal),
            max_abs_diff=diff,
            sequential_ms=statistics.median(seq),
            stacked_ms=statistics.median(stk),
            gain=statistics.median(seq) / statistics.median(stk),
        )
        row["torch"] = torch.__version__
        rows.append(row)
        print(row, flush=True)
    when = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = Path(__file__).with_name(f"stacking-{when}.csv")
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
