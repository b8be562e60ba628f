"""``crypten.communicator``: the module CrypTen code imports as
``import crypten.communicator as comm``; the same as :mod:`cryptgpu.comm`."""

from __future__ import annotations

from .comm import Communicator, get

__all__ = ["Communicator", "get"]
