"""What a client's training costs: FLOPs and the memory of one step, counted from the model.

FLOPs: a Conv2d or Linear layer costs 2 x (multiply-adds of its weight) per image in the forward
pass, counted by forward hooks on one image; biases, activations, pooling and BatchNorm are left
out (a few % of a CNN's). A sparse layer costs its dense FLOPs times its density k_l / n_l (what
a sparse kernel does; our masked dense tensors do not run faster). Training = 3 x forward (the
forward pass, the input gradient and the weight gradient) per sample and epoch.

Memory of one client step: weights + gradients + optimiser state + the activations autograd
keeps for the backward pass of one mini-batch (counted from the saved tensors' storages, each
once, parameters excluded). A sparse layer is stored as its kept values (float32) plus a bitmap
(1 bit per weight), its gradient as the kept values only. Counted from tensors, so it is the same
on every machine; a framework's allocator adds its own overhead on top.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tinyproto.algorithms.fedtiny.pruning import bitmap_bytes

FLOAT_BYTES = 4


@torch.no_grad()
def layer_flops(model: nn.Module, in_channels: int, image_size: int) -> dict[str, int]:
    """Forward FLOPs (2 x multiply-adds) of each Conv2d / Linear weight for one image."""
    flops: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            per_out = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            per_out = m.in_features
        else:
            continue

        def hook(mod, inp, out, key=f"{name}.weight", k=per_out):
            flops[key] = flops.get(key, 0) + 2 * k * out[0].numel()  # out[0]: one image

        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return flops


def activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one training forward (on a copy, so
    BatchNorm statistics of ``model`` do not move); each storage once, parameters excluded."""
    m = copy.deepcopy(model)
    m.train()
    params = {p.untyped_storage().data_ptr() for p in m.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(m(x)[1], y)
    return sum(seen.values())


def optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(
        t.numel() * t.element_size()
        for st in opt.state.values()
        for t in st.values()
        if isinstance(t, torch.Tensor)
    )


def client_cost(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    batch: tuple[torch.Tensor, torch.Tensor],
    samples: int,
    epochs: int,
    kept: dict[str, int] | None = None,
) -> dict[str, float]:
    """One model's costs on one client. ``kept``: {masked weight: k_l} of a sparse model.

    Returns inference FLOPs per image, training FLOPs per round (3 x forward x samples x
    epochs), and the bytes of one step: model (weights, buffers, bitmaps), gradients,
    optimiser state, activations, and their total.
    """
    x, y = batch
    kept = kept or {}
    per_layer = layer_flops(model, x.shape[1], x.shape[-1])
    params = dict(model.named_parameters())
    density = {n: kept[n] / params[n].numel() if n in kept else 1.0 for n in per_layer}
    forward = sum(f * density[n] for n, f in per_layer.items())
    values = sum(kept.get(n, p.numel()) for n, p in params.items() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    bitmaps = sum(bitmap_bytes(params[n].numel()) for n in kept)
    out = {
        "inference_flops": float(forward),
        "train_flops": float(3 * forward * samples * epochs),
        "model_bytes": float(FLOAT_BYTES * values + buffers + bitmaps),
        "grad_bytes": float(FLOAT_BYTES * values),
        "optimizer_bytes": float(optimizer_bytes(optimizer) if optimizer is not None else 0),
        "activation_bytes": float(activation_bytes(model, x, y)),
    }
    out["step_memory_bytes"] = (
        out["model_bytes"] + out["grad_bytes"] + out["optimizer_bytes"] + out["activation_bytes"]
    )
    return out


def first_batch(data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``batch_size`` samples of a client's training split (a step's shape)."""
    idx = data.split.train_idx[:batch_size]
    return data.dataset.images(idx), data.dataset.y[idx]


def trained_cost(pairs, data, batch_size: int, epochs: int, kept=None) -> dict[str, float]:
    """A client's costs summed over the models it trains (``ClientState.trained()`` pairs; FML
    and FedKD train two). Modules that are not image models (FedKD's projection) are left out."""
    batch = first_batch(data, batch_size)
    costs = [
        client_cost(m, opt, batch, data.num_train, epochs, kept)
        for m, opt in pairs
        if hasattr(m, "features")
    ]
    return {k: float(sum(c[k] for c in costs)) for k in costs[0]} if costs else {}


def summarise(costs: list[dict[str, float]], prefix: str = "") -> dict[str, float]:
    """Per-run numbers from per-client costs: total training FLOPs per round, and the mean and
    the largest client of the per-client numbers."""
    if not costs:
        return {}
    out = {f"{prefix}train_flops_per_round": float(sum(c["train_flops"] for c in costs))}
    keys = (
        "inference_flops",
        "train_flops",
        "step_memory_bytes",
        "activation_bytes",
        "model_bytes",
    )
    for key in keys:
        vals = [c[key] for c in costs]
        out[f"{prefix}client_{key}_mean"] = float(sum(vals) / len(vals))
        out[f"{prefix}client_{key}_max"] = float(max(vals))
    return out
