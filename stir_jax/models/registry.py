"""The one model registry: every model by name, with what the rest of the package needs to know.

Training, evaluation, the sweep, the report, the benchmarks and the tests read model facts from
here and nowhere else. A spec says where the module lives and its capabilities:

  kind        "stir" (64x64 STIR images, any channels/classes) or "mnist_scale" (28x28x1, 10
              classes, the SESN authors' benchmark)
  family      "paper" (the paper's 11 models), "variant" (soft_pool), "field" (the field's other
              families on STIR: dss, ss, sevf, gauss_der), "mnist_scale", or "user"
  pooling     the model reports ScalePool indices (aux pool1_indices, pool2_indices)
  siconv      built on SiConv2d (one map per kernel scale: the SiConv models' cost profile)
  train_mode  called with ``train=True`` while training (batch norm, dropout; variables hold
              batch_stats), else parameters only
  aux         ``apply(..., with_aux=True)`` returns (logits, aux) with the stage maps
  takes       the constructor arguments the module declares (among num_channels, kernel_size,
              interpolation, dtype, param_dtype, precision, impl), read from the class itself

A user's model needs no entry: ``lookup("mypkg.nets:MyNet")`` imports it (Flax Linen class, NNX
class, or a factory returning a Linen module), and ``register(name, factory, **capabilities)``
names one in-process. The contract (docs/own_model.md): the model is constructed with
``num_classes=`` plus whichever of the arguments above it declares, is called on (B, 64, 64, C)
float images in [0, 1] and returns logits (B, num_classes), or (logits, aux) when it takes
``with_aux`` and is called with ``with_aux=True``.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, canonical_dtype, canonical_precision

KINDS = ("stir", "mnist_scale")
FAMILIES = ("paper", "variant", "field", "mnist_scale", "user")
# constructor arguments a model may declare; num_classes is always passed
OPTIONAL_ARGS = ("num_channels", "kernel_size", "interpolation", "dtype", "param_dtype",
                 "precision", "impl")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One registered model (see the module docstring for the fields)."""
  name: str
  target: str | Callable  # "package.module:Attr", or the class/factory itself
  kind: str = "stir"
  family: str = "paper"
  kwargs: dict = dataclasses.field(default_factory=dict)  # fixed constructor arguments
  pooling: bool = False
  siconv: bool = False
  train_mode: bool = False
  converter: str | None = "from_torch"  # PyTorch state-dict converter in the target's module
  reference: str = ""  # the work it implements, for the report's families table
  group: str = ""  # the paper's models by kind (baselines, scale pooling, SESN), for the figures

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"model {self.name!r}: kind must be one of {', '.join(KINDS)}")
    if self.family not in FAMILIES:
      raise ValueError(f"model {self.name!r}: family must be one of {', '.join(FAMILIES)}")

  def load(self) -> Callable:
    """The class or factory (imported on first use)."""
    return _resolve(self.target) if isinstance(self.target, str) else self.target

  @property
  def is_nnx(self) -> bool:
    from flax import nnx  # pylint: disable=g-import-not-at-top
    obj = self.load()
    return inspect.isclass(obj) and issubclass(obj, nnx.Module)

  @property
  def takes(self) -> frozenset[str]:
    """The optional constructor arguments the model declares."""
    return frozenset(a for a in OPTIONAL_ARGS if a in _declared(self.load()))

  @property
  def aux(self) -> bool:
    """Whether its __call__ takes with_aux (built-in models all do)."""
    obj = self.load()
    call = obj.__call__ if inspect.isclass(obj) else None
    if call is None:  # a factory: ask the module it builds
      return self.family != "user" or "with_aux" in _call_args(self.build_default())
    return "with_aux" in inspect.signature(call).parameters

  def build_default(self):
    return build(self.name, num_channels=1, num_classes=2)

  def from_torch(self) -> Callable[[dict], dict]:
    """The converter of a reference PyTorch state dict into this model's parameters."""
    if self.converter is None or not isinstance(self.target, str):
      raise ValueError(f"model {self.name!r} has no PyTorch converter")
    module = importlib.import_module(self.target.split(":")[0])
    return getattr(module, self.converter)

  def paper_lr(self, scenario: int, data: str = "emoji") -> float | None:
    """The learning rate of the paper's published table for this model, data and scenario (None
    when the paper has no such cell)."""
    return _paper_lrs().get((self.name, data, int(scenario)))


def _resolve(target: str):
  module_name, _, attr = target.partition(":")
  if not module_name or not attr:
    raise ValueError(f"model {target!r} is not of the form package.module:Name")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"cannot import {module_name!r} for model {target!r} ({e}); is it on "
                     "PYTHONPATH?") from None
  obj = module
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ValueError(f"module {module_name!r} has no {attr!r} (model {target!r})")
    obj = getattr(obj, part)
  if not callable(obj):
    raise ValueError(f"model {target!r} is not a class or a factory")
  return obj


def _declared(obj) -> set[str]:
  """Constructor arguments of a Linen class (its dataclass fields), an NNX class or a factory."""
  if inspect.isclass(obj) and issubclass(obj, nn.Module):
    return {f.name for f in dataclasses.fields(obj)}
  params = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
  if any(p.kind == p.VAR_KEYWORD for p in params.values()):
    return set(OPTIONAL_ARGS)
  return set(params)


def _call_args(module) -> set[str]:
  return set(inspect.signature(module.__call__).parameters)


@functools.cache
def _paper_lrs() -> dict[tuple[str, str, int], float]:
  from stir_jax import paper_tables  # pylint: disable=g-import-not-at-top
  return {cell: row["lr"] for cell, row in paper_tables.paper_results().items()}


_M = "stir_jax.models."
_S = "stir_jax.models.mnist_scale."


def _stir(name, target, family="paper", **kw) -> ModelSpec:
  return ModelSpec(name, _M + target, "stir", family, **kw)


def _mnist(name, target, **kw) -> ModelSpec:
  return ModelSpec(name, _S + target, "mnist_scale", "mnist_scale", train_mode=True, **kw)


_BUILTIN = (
    _stir("standard", "standard:StandardCNN", group="baselines"),
    _stir("pixel_pool", "pooling:ScalePoolCNN", kwargs={"pool": "pixel"}, pooling=True,
          siconv=True, reference="scale pooling (Altstidl et al. 2023)", group="scale pooling"),
    _stir("slice_pool", "pooling:ScalePoolCNN", kwargs={"pool": "slice"}, pooling=True,
          siconv=True, group="scale pooling"),
    _stir("energy_pool", "pooling:ScalePoolCNN", kwargs={"pool": "energy"}, pooling=True,
          siconv=True, group="scale pooling"),
    _stir("soft_pool", "pooling:ScalePoolCNN", "variant",
          kwargs={"pool": "soft", "learnable_temperature": True}, pooling=True, siconv=True,
          group="scale pooling"),
    _stir("conv3d", "pooling:Conv3dCNN", converter="conv3d_from_torch", siconv=True,
          group="scale pooling"),
    _stir("ensemble", "ensemble:EnsembleModel", group="baselines"),
    _stir("spatial_transform", "spatial_transform:SpatialTransformModel", group="baselines"),
    _stir("xu", "xu:XuModel", group="baselines"),
    _stir("kanazawa", "kanazawa:KanazawaModel", group="baselines"),
    _stir("hermite", "sesn:HermiteModel", reference="SESN, Hermite basis (Sosnovik et al. 2020)",
          group="SESN"),
    _stir("disco", "sesn:DiscoModel", reference="SESN, DISCO basis (Sosnovik et al. 2021)",
          group="SESN"),
    # the field's other scale-equivariant families in the paper's model pattern
    _stir("dss", "dss:DSSModel", "field", reference="DSS (Worrall and Welling 2019)"),
    _stir("ss", "scale_steerable:ScaleSteerableModel", "field",
          reference="SS-CNN (Ghosh and Gupta 2019)"),
    _stir("sevf", "sevf:SEVFModel", "field", reference="SEVF (Marcos et al. 2018)"),
    _stir("gauss_der", "gaussian_derivative:GaussDerModel", "field",
          reference="Gaussian-derivative scale channels (Lindeberg 2022; Perzanowski and "
                    "Lindeberg)"),
    # the ten models of the SESN authors' MNIST-scale benchmark (ISosnovik/sesn models/mnist_*.py)
    _mnist("mnist_cnn_28", "cnn:MnistCNN"),
    _mnist("mnist_ses_scalar_28", "sesn:MnistSESScalar"),
    _mnist("mnist_ses_vector_28", "sesn:MnistSESVector"),
    _mnist("mnist_dss_scalar_28", "dss:MnistDSSScalar"),
    _mnist("mnist_dss_vector_28", "dss:MnistDSSVector"),
    _mnist("mnist_ss_28", "ss:MnistSS"),
    _mnist("mnist_sevf_scalar_28", "sevf:MnistSEVFScalar"),
    _mnist("mnist_sevf_vector_28", "sevf:MnistSEVFVector"),
    _mnist("mnist_kanazawa_28", "kanazawa:MnistKanazawa"),
    _mnist("mnist_xu_28", "xu:MnistXu"),
)
REGISTRY: dict[str, ModelSpec] = {s.name: s for s in _BUILTIN}


def names(kind: str | None = "stir", family: str | None = None) -> list[str]:
  """Registered names, of one kind ("stir", "mnist_scale"; None: all) and family (None: all)."""
  return [n for n, s in REGISTRY.items()
          if (kind is None or s.kind == kind) and (family is None or s.family == family)]


def register(name: str, factory: Callable | str, *, kind: str = "stir", family: str = "user",
             pooling: bool = False, train_mode: bool = False, replace: bool = False,
             **kwargs: Any) -> ModelSpec:
  """Names a model in this process: `factory` is a Linen or NNX class, a function returning a
  Linen module, or "package.module:Name"; `kwargs` are fixed constructor arguments. A built-in
  name cannot be replaced; a user's name only with replace=True."""
  if not name or ":" in name:
    raise ValueError(f"bad model name {name!r} (no ':' in registered names)")
  old = REGISTRY.get(name)
  if old is not None and (old.family != "user" or not replace):
    raise ValueError(f"model {name!r} is already registered"
                     + ("" if old.family != "user" else "; pass replace=True to replace it"))
  spec = ModelSpec(name, factory, kind, family, kwargs=dict(kwargs), pooling=pooling,
                   train_mode=train_mode, converter=None)
  spec.load()  # fail now on a bad target
  REGISTRY[name] = spec
  return spec


def lookup(name: str) -> ModelSpec:
  """The spec of a registered name, or of "package.module:Name" (imported, and registered under
  that name). ValueError with one line for anything else."""
  if name in REGISTRY:
    return REGISTRY[name]
  if ":" in str(name):
    spec = ModelSpec(name, name, "stir", "user", converter=None)
    spec.load()
    REGISTRY[name] = spec
    return spec
  close = [n for n in REGISTRY if n.startswith(str(name)[:3])]
  hint = f" (did you mean {' or '.join(close[:3])}?)" if close else ""
  raise ValueError(f"unknown model {name!r}{hint}; valid: {', '.join(names(None))}, or "
                   "package.module:Name for a model of your own")


def build(name: str, *, num_channels: int, num_classes: int, kernel_size: int = 7,
          interpolation: str = "bicubic", dtype: Any = None, param_dtype: Any = jnp.float32,
          precision: Any = DEFAULT_PRECISION, impl: str = "auto",
          **module_kwargs: Any) -> nn.Module:
  """The Linen module of `name` (NNX models come wrapped by flax.nnx.bridge, so every model is
  initialised and applied the same way). Only arguments the model declares are passed; the
  MNIST-scale models fix their own channels, classes and kernels."""
  spec = lookup(name)
  if num_channels < 1 or num_classes < 2:
    raise ValueError(
        f"need num_channels >= 1 and num_classes >= 2, got {num_channels}, {num_classes}")
  offered = {"num_channels": num_channels, "kernel_size": kernel_size,
             "interpolation": interpolation, "dtype": canonical_dtype(dtype),
             "param_dtype": canonical_dtype(param_dtype),
             "precision": canonical_precision(precision), "impl": impl}
  if spec.kind == "mnist_scale":
    for key in ("num_channels", "kernel_size", "interpolation", "impl"):
      offered.pop(key)
  else:
    offered["num_classes"] = num_classes
  takes = _declared(spec.load())
  args = {k: v for k, v in offered.items() if k in takes or k == "num_classes"}
  args.update(spec.kwargs)
  args.update(module_kwargs)
  obj = spec.load()
  if spec.is_nnx:
    from flax.nnx import bridge  # pylint: disable=g-import-not-at-top
    return bridge.to_linen(obj, **args)
  module = obj(**args)
  if not isinstance(module, nn.Module):
    raise ValueError(f"model {name!r} built a {type(module).__name__}, not a flax module "
                     "(a factory must return a flax.linen.Module)")
  return module
