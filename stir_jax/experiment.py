"""The experiment a config describes, read and validated once.

`FIELDS` is the one table of config fields: each field's default and what it means. configs/*.py
start from `default_config()` (every field at its default) and change what they choose; a run
directory's config.json written before a field existed is read with the field's default
(`rundir.config_differences`). `from_config(config)` checks every setting and returns a frozen
`Experiment` grouping model, data, optimizer, protocol and runtime; an invalid setting is a
`ConfigError` (a `RunError`: the entry points print it as one line) raised before anything is
written.

>>> exp = from_config(default_config())
>>> exp.protocol.batch_size, exp.model.name
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, NamedTuple

import ml_collections

from stir_jax.errors import RunError


class ConfigError(RunError):
  """An invalid config setting (one line, raised before the run directory is touched)."""


class Field(NamedTuple):
  default: Any
  help: str


INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
IMPLS = ("auto", "fft", "direct", "xla")
DTYPES = ("float32", "bfloat16", "float16", "float64")
PRECISIONS = ("highest", "high", "default", "float32", "tensorfloat32", "bfloat16")
TRAIN_ORDERS = ("reshuffle", "paper")
PARALLELISM = ("jit", "pmap")
SEED_BATCHING = ("auto", "vmap", "unroll")
ON_BROKEN_CHECKPOINT = ("restart", "stop")

# The defaults are the paper's protocol (Altstidl et al., Sec. IV) on STIR-emoji, Mid2Rest.
FIELDS: dict[str, Field] = {
    # model
    "model": Field("pixel_pool", "model name from the registry (stir_jax.models.names(None): "
                   "standard, pixel_pool, hermite, ..., mnist_cnn_28, ...) or package.module:Name "
                   "of your own (docs/own_model.md)"),
    "kernel_size": Field(7, "base kernel size k of every convolution (the paper: 7)"),
    "interpolation": Field("bicubic", "SiConv kernel interpolation: " + ", ".join(INTERPOLATIONS)),
    "impl": Field("auto", "form of the layers that have several: auto (per backend, "
                  "stir_jax/layers/forms.py), direct, fft (xla: old name of direct)"),
    "dtype": Field("float32", "computation dtype of every layer (parameters stay float32): "
                   + ", ".join(DTYPES[:3])),
    "precision": Field("highest", "precision of every convolution and matmul: highest (true "
                       "float32 everywhere), high, default (the backend's fastest)"),
    # data
    "dataset": Field("data/emoji.npz", "a STIR npz file (data/emoji*.npz is generated when "
                     "missing) or an MNIST-scale npz file"),
    "scenario": Field(2, "1 Small2Large, 2 Mid2Rest, 3 Large2Small, 4 All2All (STIR only)"),
    "train_order": Field("reshuffle", "reshuffle (a new order every epoch from seed and epoch) "
                         "or paper (the authors' one fixed permutation)"),
    "input_mean": Field(0.0, "inputs are (image - input_mean) / input_std (the paper: none)"),
    "input_std": Field(1.0, "see input_mean; positive"),
    # optimizer
    "learning_rate": Field(1e-3, "Adam learning rate (the paper: 1e-3)"),
    "lr_decay_epochs": Field((), "multiply the rate by lr_decay_factor after each of these "
                             "epochs (PyTorch's MultiStepLR); empty: constant"),
    "lr_decay_factor": Field(0.1, "see lr_decay_epochs"),
    # protocol
    "batch_size": Field(16, "examples per training step (the paper: 16)"),
    "eval_batch_size": Field(64, "examples per evaluation step (memory only)"),
    "num_epochs": Field(200, "at most this many epochs (the paper: 200)"),
    "patience": Field(10, "stop after this many epochs without a better validation accuracy "
                      "(the paper: 10); 0: never"),
    "seed": Field(1, "seed of parameter init and data order"),
    "num_seeds": Field(1, "seeds seed .. seed + n - 1 trained together, one workdir/seed_<s> "
                       "each; 1: a single run in workdir"),
    # placement and runtime
    "parallelism": Field("jit", "data parallelism over all devices: jit (mesh) or pmap"),
    "seed_batching": Field("auto", "how a device runs its seeds: auto, vmap, unroll"),
    "checkpoint_every_minutes": Field(0.0, "also save a resumable checkpoint inside an epoch "
                                      "this often (0: only at epoch ends and on SIGTERM)"),
    "on_broken_checkpoint": Field("restart", "when no saved checkpoint restores: restart "
                                  "(train from scratch, with a warning) or stop"),
}

# Fields that change how a run executes, not what it computes: a rerun may change them.
RUNTIME_FIELDS = ("checkpoint_every_minutes", "on_broken_checkpoint")

DEFAULTS: dict[str, Any] = {k: f.default for k, f in FIELDS.items()}


def default_config() -> ml_collections.ConfigDict:
  """A ConfigDict with every field of `FIELDS` at its default."""
  return ml_collections.ConfigDict(dict(DEFAULTS))


def with_defaults(found: dict) -> dict:
  """A stored config dict completed with the defaults of the fields it lacks (older runs)."""
  return {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in DEFAULTS.items()}, **found}


@dataclasses.dataclass(frozen=True)
class Model:
  name: str
  kernel_size: int
  interpolation: str
  dtype: str
  precision: str
  impl: str


@dataclasses.dataclass(frozen=True)
class Data:
  dataset: str
  scenario: int
  train_order: str
  input_mean: float
  input_std: float

  @property
  def input_norm(self) -> tuple[float, float] | None:
    """(mean, std), or None when the images are used as they are."""
    return None if (self.input_mean, self.input_std) == (0.0, 1.0) else (self.input_mean,
                                                                           self.input_std)


@dataclasses.dataclass(frozen=True)
class Optimizer:
  learning_rate: float
  lr_decay_epochs: tuple[int, ...]
  lr_decay_factor: float


@dataclasses.dataclass(frozen=True)
class Protocol:
  batch_size: int
  eval_batch_size: int
  num_epochs: int
  patience: int
  seed: int
  num_seeds: int

  @property
  def seeds(self) -> list[int]:
    return [self.seed + i for i in range(self.num_seeds)]


@dataclasses.dataclass(frozen=True)
class Runtime:
  parallelism: str
  seed_batching: str
  checkpoint_every_minutes: float
  on_broken_checkpoint: str


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A validated config. `config` is the complete ConfigDict (every field; what config.json
  holds), for the code that reads fields by name (data loading, the evaluation)."""
  model: Model
  data: Data
  optimizer: Optimizer
  protocol: Protocol
  runtime: Runtime
  config: ml_collections.ConfigDict = dataclasses.field(compare=False, repr=False)

  def for_seed(self, seed: int) -> "Experiment":
    """The experiment of one of several seeds: seed = seed, num_seeds = 1."""
    config = ml_collections.ConfigDict(self.config.to_dict())
    config.seed, config.num_seeds = int(seed), 1
    return dataclasses.replace(self, protocol=dataclasses.replace(self.protocol, seed=int(seed),
                                                                  num_seeds=1), config=config)

  def to_dict(self) -> dict:
    """config.json's content."""
    import json  # pylint: disable=g-import-not-at-top
    return json.loads(self.config.to_json())


# --- validation ------------------------------------------------------------------------------

def _one_of(name: str, value, valid) -> str:
  if value not in valid:
    raise ConfigError(f"config.{name} = {value!r} is not valid; valid: {', '.join(valid)}")
  return value


def _int(name: str, value, lo: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f"config.{name} must be an integer, got {value!r}")
  if value < lo:
    raise ConfigError(f"config.{name} must be at least {lo}, got {value}")
  return int(value)


def _float(name: str, value, positive: bool = False, nonneg: bool = False) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ConfigError(f"config.{name} must be a finite number, got {value!r}")
  if positive and value <= 0:
    raise ConfigError(f"config.{name} must be positive, got {value}")
  if nonneg and value < 0:
    raise ConfigError(f"config.{name} must not be negative, got {value}")
  return float(value)


def check_model_name(name) -> None:
  """ConfigError unless `name` is a model of the registry (`stir_jax.models.lookup`: a registered
  name, or package.module:Name of one's own)."""
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  if not isinstance(name, str):
    raise ConfigError(f"config.model must be a model name, got {name!r}")
  try:
    models.lookup(name)
  except ValueError as e:
    raise ConfigError(f"config.model: {str(e).splitlines()[0]}") from None


def unknown_field_message(name: str) -> str:
  """'config field X does not exist' with the closest field, as one sentence."""
  close = difflib.get_close_matches(name, list(FIELDS), n=1)
  return (f"config field {name!r} does not exist"
          + (f"; did you mean {close[0]!r}?" if close else f"; fields: {', '.join(FIELDS)}"))


def from_config(config) -> Experiment:
  """The validated experiment of a ConfigDict (or dict); fields it lacks take their defaults.

  Raises:
    ConfigError: an unknown field or an invalid value (the message names the field).
  """
  given = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  for name in given:
    if name not in FIELDS:
      raise ConfigError(unknown_field_message(name))
  c = with_defaults(given)
  check_model_name(c["model"])
  decay = c["lr_decay_epochs"]
  if isinstance(decay, (int, float)) and not isinstance(decay, bool):
    decay = (decay,)
  if not isinstance(decay, (list, tuple)):
    raise ConfigError(f"config.lr_decay_epochs must be a sequence of epochs, got {decay!r}")
  decay = tuple(_int("lr_decay_epochs", e, 1) for e in decay)
  if list(decay) != sorted(set(decay)):
    raise ConfigError(f"config.lr_decay_epochs must be increasing positive epochs, got {decay}")
  if not isinstance(c["dataset"], str) or not c["dataset"]:
    raise ConfigError(f"config.dataset must be a file path, got {c['dataset']!r}")
  exp = Experiment(
      model=Model(name=c["model"], kernel_size=_int("kernel_size", c["kernel_size"], 1),
                  interpolation=_one_of("interpolation", c["interpolation"], INTERPOLATIONS),
                  dtype=_one_of("dtype", c["dtype"], DTYPES),
                  precision=_one_of("precision", str(c["precision"]).lower(), PRECISIONS),
                  impl=_one_of("impl", c["impl"], IMPLS)),
      data=Data(dataset=c["dataset"], scenario=_scenario(c["scenario"]),
                train_order=_one_of("train_order", c["train_order"], TRAIN_ORDERS),
                input_mean=_float("input_mean", c["input_mean"]),
                input_std=_float("input_std", c["input_std"], positive=True)),
      optimizer=Optimizer(learning_rate=_float("learning_rate", c["learning_rate"], positive=True),
                          lr_decay_epochs=decay,
                          lr_decay_factor=_float("lr_decay_factor", c["lr_decay_factor"],
                                                 positive=True)),
      protocol=Protocol(batch_size=_int("batch_size", c["batch_size"], 1),
                        eval_batch_size=_int("eval_batch_size", c["eval_batch_size"], 1),
                        num_epochs=_int("num_epochs", c["num_epochs"], 1),
                        patience=_int("patience", c["patience"], 0),
                        seed=_int("seed", c["seed"], 0),
                        num_seeds=_int("num_seeds", c["num_seeds"], 1)),
      runtime=Runtime(parallelism=_one_of("parallelism", c["parallelism"], PARALLELISM),
                      seed_batching=_one_of("seed_batching", c["seed_batching"], SEED_BATCHING),
                      checkpoint_every_minutes=_float("checkpoint_every_minutes",
                                                      c["checkpoint_every_minutes"], nonneg=True),
                      on_broken_checkpoint=_one_of("on_broken_checkpoint",
                                                   c["on_broken_checkpoint"],
                                                   ON_BROKEN_CHECKPOINT)),
      config=ml_collections.ConfigDict(c))
  return exp


def _scenario(value) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2, 3, 4):
    raise ConfigError(f"config.scenario must be 1, 2, 3 or 4 (Small2Large, Mid2Rest, "
                      f"Large2Small, All2All), got {value!r}")
  return int(value)


def fields_help() -> str:
  """The config fields with their defaults and meanings (train.py --help)."""
  width = max(len(k) for k in FIELDS)
  return "\n".join(f"  --config.{k:<{width}} {f.help} (default: {f.default!r})"
                   for k, f in FIELDS.items())


def build_model(config, data):
  """The model of an `Experiment` (or a config) for the data's channel and class counts, in its
  computation dtype, precision and impl (RunError on a bad name or value, or a model that does not
  fit the data: the MNIST-scale models need MNIST-scale data, the STIR models STIR data)."""
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  exp = config if isinstance(config, Experiment) else from_config(config)
  config, m = exp.config, exp.model  # every field, checked (older runs' configs too)
  is_mnist_data = data.kind == "mnist_scale"  # StirData / MnistScaleData
  try:
    spec = models.lookup(config.model)
    if spec.kind == "mnist_scale" and not is_mnist_data:
      raise RunError(f"model {config.model!r} is an MNIST-scale model (28x28 inputs); "
                     f"config.dataset {config.dataset} is not MNIST-scale data (python -m "
                     "stir_jax.data mnist-scale ... writes one)")
    if spec.kind == "mnist_scale" and data.num_classes != 10:
      raise RunError(f"the MNIST-scale models have 10 classes; {config.dataset} has "
                     f"{data.num_classes}")
    if spec.kind != "mnist_scale" and is_mnist_data:
      raise RunError(f"model {config.model!r} is not an MNIST-scale model, and "
                     f"{config.dataset} is MNIST-scale data; valid: "
                     f"{', '.join(models.names('mnist_scale'))}")
    return models.build(m.name, num_channels=data.num_channels,
                        num_classes=data.num_classes, kernel_size=m.kernel_size,
                        interpolation=m.interpolation, dtype=m.dtype, precision=m.precision,
                        impl=m.impl)
  except (ValueError, TypeError, ImportError) as e:
    raise RunError(str(e)) from None
