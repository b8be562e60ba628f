"""CrypTen's ``crypten.init(config_file=None, party_name=None, device=None)``
arguments, read into cryptgpu's ``init`` keywords.

CrypTen's configuration file (``configs/default.yaml``) is a YAML tree of
settings. The one with a counterpart here is ``encoder.precision_bits``
(``init(precision_bits=...)``); ``communicator.verbose`` is accepted with
either value (the counters of :func:`cryptgpu.stats` are always on). The
others choose CrypTen's own protocols and approximation steps, which have
no counterpart here: each is accepted at CrypTen's default value only (so
CrypTen's stock file loads) and any other value is refused with a
ValueError naming it, as is a key CrypTen does not have.
"""

from __future__ import annotations

import os

import torch

# CrypTen's keys (configs/default.yaml) with no counterpart here, and the
# default value that is accepted (it describes CrypTen's own choice).
_DEFAULTS = {
    "debug.debug_mode": False,
    "debug.validation_mode": False,
    "functions.max_method": "log_reduction",
    "functions.exp_iterations": 8,
    "functions.reciprocal_method": "NR",
    "functions.reciprocal_nr_iters": 10,
    "functions.reciprocal_log_iters": 1,
    "functions.reciprocal_all_pos": False,
    "functions.reciprocal_initial": None,
    "functions.sqrt_nr_iters": 3,
    "functions.sqrt_nr_initial": None,
    "functions.sigmoid_tanh_method": "reciprocal",
    "functions.sigmoid_tanh_terms": 32,
    "functions.log_iterations": 2,
    "functions.log_exp_iterations": 8,
    "functions.log_order": 8,
    "functions.trig_iterations": 10,
    "functions.erf_iterations": 8,
    "mpc.active_security": False,
    "mpc.protocol": "beaver",
    "nn.dpsmpc.protocol": "layer_estimation",
    "nn.dpsmpc.skip_loss_forward": True,
    "nn.dpsmpc.cache_pred_size": True,
}
# keys taken with any of these values, with no effect here
_ANY = {
    "communicator.verbose": (True, False),  # the counters are always on
    "mpc.provider": ("TFP", "TTP"),  # replicated sharing needs no triples
}
_INSTEAD = {
    "functions.reciprocal_all_pos": "x.reciprocal(all_pos=True)",
    "debug.validation_mode": "init(check_range=True) checks layer outputs",
}


def is_device(arg) -> bool:
    """Whether init's first positional argument names a device (cryptgpu's
    ``init("cuda")`` before it took CrypTen's ``config_file`` there)."""
    if isinstance(arg, torch.device):
        return True
    if not isinstance(arg, str):
        return False
    head, _, tail = arg.partition(":")
    return head in ("cpu", "cuda") and (not tail or tail.isdigit())


def read(config_file) -> dict:
    """``init``'s keywords set by the CrypTen configuration file
    ``config_file`` (a path): ``{"precision_bits": f}`` when it sets
    ``encoder.precision_bits``. FileNotFoundError for a missing file;
    ValueError for a key that CrypTen does not have or one set to a value
    this library has no counterpart for."""
    if not isinstance(config_file, (str, os.PathLike)):
        raise TypeError(
            "config_file must be the path of a CrypTen configuration file (YAML), got "
            f"{type(config_file).__name__}"
        )
    path = os.fspath(config_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no CrypTen configuration file {path!r}")
    try:
        import yaml
    except ImportError:
        raise ImportError(
            "reading a CrypTen configuration file needs PyYAML (pip install pyyaml); "
            "or pass the settings as init()'s keywords (precision_bits=...)"
        ) from None
    with open(path, encoding="utf-8") as fh:
        tree = yaml.safe_load(fh)
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ValueError(f"{path!r} is not a CrypTen configuration file (a YAML mapping)")
    out: dict = {}
    for key, value in _flatten(tree, ""):
        if key == "encoder.precision_bits":
            out["precision_bits"] = value
        elif key in _ANY:
            if value not in _ANY[key]:
                raise ValueError(
                    f"{path}: {key}: {value!r}; expected one of {', '.join(map(repr, _ANY[key]))}"
                )
        elif key in _DEFAULTS:
            default = _DEFAULTS[key]
            if value != default or type(value) is not type(default):
                instead = f" (here: {_INSTEAD[key]})" if key in _INSTEAD else ""
                raise ValueError(
                    f"{path}: {key}: {value!r} is not supported: cryptgpu has no counterpart "
                    f"to this CrypTen setting and accepts only CrypTen's default "
                    f"{default!r}{instead}; the settings here are crypten.init()'s keywords "
                    "(precision_bits, truncation, seed, timeout_s, device, check_range)"
                )
        else:
            raise ValueError(f"{path}: unknown CrypTen configuration key {key!r}")
    return out


def _flatten(tree: dict, prefix: str):
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        else:
            yield key, v
