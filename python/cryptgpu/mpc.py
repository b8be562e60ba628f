"""CrypTen's ``crypten.mpc`` entry point for multi-party functions.

>>> import cryptgpu as crypten, torch
>>> @crypten.mpc.run_multiprocess(world_size=3)
... def job():
...     x = crypten.cryptensor(torch.tensor([1.0, -2.0]))
...     return crypten.comm.get().get_rank(), x.relu().get_plain_text().tolist()
>>> job()
[(0, [1.0, 0.0]), (1, [1.0, 0.0]), (2, [1.0, 0.0])]
"""

from __future__ import annotations

import functools

from . import spmd


def run_multiprocess(world_size: int = 3, maxsize: int | None = None):
    """Decorator: run the function once per party, SPMD, and return the
    parties' results as a list in rank order (as CrypTen does).

    CrypTen forks ``world_size`` processes; here the three parties are
    threads of this process, each with its own single-party session over
    in-process channels (:func:`cryptgpu.spmd.run`), so the function's
    results and the communication counters are those of a real three-party
    run. For real separate processes use ``python -m cryptgpu.launch``.
    ``world_size`` must be 3 (replicated sharing is a three-party protocol);
    ``maxsize`` is accepted for compatibility and ignored.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int):
        raise TypeError(f"world_size must be an int, got {type(world_size).__name__}")
    if world_size != 3:
        raise ValueError(
            f"cryptgpu runs exactly three parties (replicated sharing), got world_size={world_size}"
        )
    del maxsize

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return spmd.run(func, *args, **kwargs)

        return wrapper

    return decorator
