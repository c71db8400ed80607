"""What the machine must offer a run: the device, a writable results folder, enough memory.

Checked by :func:`check_environment` before anything is loaded or written.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinyproto.config.core import Config
from tinyproto.config.profiles import (
    AUTO,
    DATASET_CLASSES,
    DATASET_SHAPES,
    NORMALISE_ONCE_MAX_BYTES,
    ConfigError,
    _fail,
)
from tinyproto.config.registry import reads


def check_device(name: str):
    """The torch.device for ``name``; ConfigError if it is not available on this machine."""
    import torch

    if name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            _fail("device", name, "auto or cpu: no CUDA device is available on this machine")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            _fail("device", name, f"cuda:0..cuda:{n - 1} ({n} CUDA devices here)")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            _fail("device", name, "auto or cpu: MPS is not available on this machine")
    return torch.device(name)


def check_path_text(path: str | Path, name: str = "results") -> None:
    """A path the operating system can take: no NUL byte (Python raises a bare ValueError
    deep inside the first file operation otherwise, after data may have been loaded)."""
    if "\x00" in str(path):
        _fail(name, str(path), "a path without a NUL byte")
    if isinstance(path, str) and not path.strip():  # '' or spaces: the working directory or a
        _fail(name, path, "a path, not empty or blank")  # folder named by spaces, never meant


def check_writable_folder(path: str | Path, name: str = "results") -> None:
    """``path`` is (or can become) a writable folder; nothing is created.

    The nearest existing ancestor must be a folder we may write into: a probe file is created
    and removed there (permission bits alone lie for root and on read-only mounts).
    """
    import tempfile

    check_path_text(path, name)
    path = Path(path)
    if path.exists() and not path.is_dir():
        _fail(name, str(path), "a folder (this path is a file)")
    probe_dir = path
    while not probe_dir.exists():
        parent = probe_dir.parent
        if parent == probe_dir:
            break
        probe_dir = parent
    if not probe_dir.is_dir():
        _fail(name, str(path), f"a folder path ({probe_dir} is a file, not a folder)")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".tinyproto-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        _fail(
            name,
            str(path),
            f"a writable folder (cannot create a file in {probe_dir}: {e.strerror or e})",
        )


def available_memory(device) -> int | None:
    """Bytes free for a run on ``device`` (None where it cannot be read)."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimate_memory(config: Config) -> dict:
    """Bytes a run keeps resident: every client's model (weights, gradients, optimizer state;
    the shared model too for FML/FedKD), the data set, and one batch of activations.

    Models are built on PyTorch's meta device: exact parameter counts, no memory used.
    """
    import torch

    from tinyproto.models import FAMILIES, client_model

    c, h, w = DATASET_SHAPES[config.dataset]
    k = DATASET_CLASSES.get(config.dataset, config.num_classes)
    archs = FAMILIES[config.family]
    per_arch = {}
    with torch.device("meta"):
        for i, arch in enumerate(archs[: config.num_clients]):
            m = client_model(
                config.family,
                i,
                num_classes=k,
                feature_dim=config.feature_dim,
                in_channels=c,
                image_size=h,
            )
            per_arch[arch] = sum(p.numel() for p in m.parameters())
    params = sum(per_arch[archs[i % len(archs)]] for i in range(config.num_clients))
    if reads(config.algorithm, "shared"):  # a shared model per client too
        shared = per_arch.get(config.shared.model or archs[0], max(per_arch.values()))
        params += shared * config.num_clients
    model_bytes = params * 4 * 3  # weights, gradients, SGD/aux state
    data_bytes = config.num_samples() * c * h * w
    if 4 * data_bytes <= NORMALISE_ONCE_MAX_BYTES:  # Dataset.prepared keeps a float32 copy
        data_bytes *= 5
    activation_bytes = config.batch_size * max(1024, 64 * h * w) * 4 * 8
    return {
        "params": params,
        "bytes": model_bytes + data_bytes + activation_bytes,
        "model_bytes": model_bytes,
        "data_bytes": data_bytes,
    }


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_data_source(config: Config) -> None:
    """An explicit data source (data_dir) must exist and hold the dataset (DataError)."""
    from tinyproto import data as _data

    checker = getattr(_data, "check_data_source", None)
    if checker is not None:
        checker(config.dataset, config.data_dir)


def check_environment(config: Config, root: str | Path | None = None):
    """What this machine must offer the run; returns its torch.device. ConfigError/DataError.

    Runs before anything is loaded or written: device availability, the results folder, the
    explicit data source, and an estimate of the memory the run needs.
    """
    device = check_device(config.device)
    if root is not None:
        check_writable_folder(root, "results")
    check_data_source(config)
    est = estimate_memory(config)
    free = available_memory(device)
    if free is not None and est["bytes"] > free:
        raise ConfigError(
            f"invalid feature_dim={config.feature_dim} with num_clients={config.num_clients}: "
            f"the run needs about {_gb(est['bytes'])} ({est['params']:,} model parameters, "
            f"{_gb(est['data_bytes'])} of data) but {device} has {_gb(free)} free; "
            "lower feature_dim, num_clients or max_samples"
        )
    return device
