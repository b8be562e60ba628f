"""Every public function, class, method and property of the package has a
docstring, help(cryptgpu.cryptensor) says what it does, and the native
module ships its type stubs."""

import importlib
import inspect
import pathlib

import cryptgpu

MODULES = [
    "cryptgpu",
    "cryptgpu.nn",
    "cryptgpu.nn.stats",
    "cryptgpu.nn.module",
    "cryptgpu.nn.layers",
    "cryptgpu.nn.losses",
    "cryptgpu.nn.conversion",
    "cryptgpu.nn.transformer",
    "cryptgpu.nn.hf",
    "cryptgpu.nn.to_torch",
    "cryptgpu.tensor",
    "cryptgpu.tensor_base",
    "cryptgpu.tensor_shape",
    "cryptgpu.tensor_arith",
    "cryptgpu.tensor_compare",
    "cryptgpu.tensor_reduce",
    "cryptgpu.tensor_layers",
    "cryptgpu.tensor_math",
    "cryptgpu.gradients",
    "cryptgpu.functions",
    "cryptgpu.autograd",
    "cryptgpu.optim",
    "cryptgpu.models",
    "cryptgpu.spmd",
    "cryptgpu.launch",
    "cryptgpu.keys",
    "cryptgpu.mpc",
    "cryptgpu.comm",
    "cryptgpu.cuda",
    "cryptgpu._session",
]


def undocumented() -> list[str]:
    missing = []
    for mn in MODULES:
        m = importlib.import_module(mn)
        if not (m.__doc__ or "").strip():
            missing.append(mn)
        for name, obj in vars(m).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mn:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not (obj.__doc__ or "").strip():
                missing.append(f"{mn}.{name}")
            if inspect.isclass(obj):
                for an, a in vars(obj).items():
                    f = a.fget if isinstance(a, property) else a
                    if an.startswith("_") or not inspect.isfunction(f):
                        continue
                    if not (f.__doc__ or "").strip():
                        missing.append(f"{mn}.{name}.{an}")
    return missing


def test_every_public_object_has_a_docstring():
    assert undocumented() == []


def test_help_on_cryptensor_reads_well():
    doc = inspect.getdoc(cryptgpu.cryptensor)
    assert "src" in doc and len(doc.splitlines()) >= 5
    assert "cryptensor" in (inspect.getdoc(cryptgpu.SharedTensor) or "")


def test_native_module_has_type_stubs():
    pkg = pathlib.Path(cryptgpu.__file__).parent
    stub = (pkg / "_native.pyi").read_text()
    assert (pkg / "py.typed").exists()
    for name in dir(cryptgpu._native):
        if not name.startswith("_"):
            assert name in stub, f"_native.{name} missing from _native.pyi"
