"""Probe OJ (2026-12-07, cryptgpu inside a long-lived program: serving
loops, threads, signals, re-initialising).

* An exception landing in torch.fx's own undo of its patches (a Ctrl-C or
  a per-request timer's signal handler during ``from_pytorch``) left
  ``torch.nn.Module.__call__`` patched for the whole process: every later
  torch model call and conversion raised NameError "module is not
  installed as a submodule".
* A tensor whose thread's session had ended (the thread returned) was said
  to belong "to an earlier session (init() was called again, or ...
  run_multiprocess)": neither had happened.
"""

import contextlib
import threading

import pytest
import torch
from torch.fx import _symbolic_trace

import cryptgpu
from conftest import usable


class _Interrupted(BaseException):
    """What Ctrl-C raises (KeyboardInterrupt) in the middle of fx."""


class _Timeout(Exception):
    """What a per-request timer's signal handler raises in the middle of fx."""


@pytest.mark.parametrize("kind", [_Interrupted, _Timeout])
def test_an_exception_inside_fx_undo_leaves_torch_unpatched(session, monkeypatch, kind):
    call = torch.nn.Module.__dict__["__call__"]
    getattr_ = torch.nn.Module.__dict__["__getattr__"]
    revert = _symbolic_trace._PatchedFnSetAttr.revert
    fired = []

    def interrupted_revert(self):
        # the first undo of a class attribute is where the timer lands
        if not fired:
            fired.append(self.fn_name)
            raise kind
        revert(self)

    monkeypatch.setattr(_symbolic_trace._PatchedFnSetAttr, "revert", interrupted_revert)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()).eval()
    # Ctrl-C ends the conversion; an Exception may be taken for a failed
    # trace and the other tracer tried (then the conversion succeeds)
    with pytest.raises(_Interrupted) if kind is _Interrupted else contextlib.suppress(kind):
        cryptgpu.nn.from_pytorch(model, torch.zeros(1, 3))
    monkeypatch.undo()
    assert fired, "the simulated interruption did not happen"
    assert torch.nn.Module.__dict__["__call__"] is call
    assert torch.nn.Module.__dict__["__getattr__"] is getattr_
    x = torch.randn(4, 3, dtype=torch.float64)
    model.double()
    with torch.no_grad():
        want = model(x)  # a plain torch call works (NameError before)
    pm = cryptgpu.nn.from_pytorch(model, x).encrypt()
    got = pm(cryptgpu.cryptensor(x)).get_plain_text().double()
    # one Linear of 3 terms and a ReLU: a few units of 2^-16 (5e-4 is ~30 ULP)
    assert torch.allclose(got, want, atol=5e-4)
    assert usable()


def test_a_tensor_of_an_ended_threads_session_says_so(session):
    kept = []

    def worker():
        cryptgpu.init()
        kept.append(cryptgpu.cryptensor(torch.tensor([1.0, 2.0])))

    t = threading.Thread(target=worker, name="worker-oj")
    t.start()
    t.join()
    with pytest.raises(RuntimeError, match="thread 'worker-oj', which has ended") as e:
        kept[0].get_plain_text()
    assert "earlier session" not in str(e.value)
    assert usable()
