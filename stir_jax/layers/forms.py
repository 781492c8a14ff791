"""Which computational form a layer takes: one ``impl`` vocabulary and one per-backend table.

Every layer, pure function and model with more than one form takes ``impl``:

* ``"direct"``: XLA's convolution (`jax.lax.conv_general_dilated`), or for SiConv2d one such
  convolution per kernel size; computed at the ``precision`` asked for.
* ``"fft"``: the exact FFT form (`stir_jax.layers.conv.conv2d_fft`, `conv3d`'s FFT form,
  `stir_jax.layers.siconv_fft`); float32 (at least) inside, its matmuls at HIGHEST.
* ``"auto"``: the form of `FORM_TABLE` for the platform the program is *lowered* for and the
  ``precision`` it computes at, resolved with `jax.lax.platform_dependent` (a program exported for
  "tpu" on a CPU host gets the TPU choice).
* ``"xla"``: deprecated alias of ``"direct"`` (a DeprecationWarning).

Both forms compute the same function to float32 rounding on CPU and GPU. On TPU the FFT ignores
``precision`` (XLA's TPU FFT is not float32-exact, jax issue 9881), so `FORM_TABLE` never picks an
FFT form on TPU, and docs/precision.md says what each precision gives on each backend.

The table is keyed by (layer family, backend, precision class); the families:

* ``siconv``: `SiConv2d` / `siconv2d` / `siconv2d_pool` (fused pixel, slice, energy pools), square
  inputs (non-square inputs have only the direct form);
* ``grouped``: 2-D convolutions with ``feature_group_count > 1`` (SESN H->H; Xu's
  layers run one ungrouped convolution per column, `stir_jax.layers.xu`);
* ``large_kernel``: 2-D convolutions whose kernel is larger than the unpadded input, and the
  scale-steerable layer's 'same' convolutions with kernels of `LARGE_STEERABLE` or more;
* ``conv3d``: `conv3d` (the conv3d model's convolution over (scale, y, x));
* ``conv2d``: every other 2-D convolution.

Each entry is (form, evidence): "measured on <hardware>" or "reasoned" (no GPU or TPU was
available; the reasons are in docs/precision.md, from XLA's cost analysis of both forms).
"""
from __future__ import annotations

import functools
import warnings
from typing import Callable

import jax
from jax import lax

from stir_jax.layers.dtypes import PrecisionLike, canonical_precision

IMPLS = ("auto", "direct", "fft")
_ALIASES = {"xla": "direct"}

FAMILIES = ("siconv", "grouped", "large_kernel", "conv3d", "conv2d")
BACKENDS = ("cpu", "gpu", "tpu")
PRECISIONS = ("highest", "high", "default")

#: The scale-steerable layer's kernels count as large (FFT on CPU) from this size on.
LARGE_STEERABLE = 9

_CPU = "measured on the 2-core development CPU (jaxlib 0.10.2)"
_R = "reasoned"


def _rows(family: str, cpu: str, cpu_evidence: str, gpu: dict[str, str]) -> dict:
  """One family's entries: CPU ignores precision (XLA:CPU computes float32 products); TPU is
  always direct (its FFT ignores precision; its convolutions run on the MXU)."""
  rows = {}
  for p in PRECISIONS:
    rows[(family, "cpu", p)] = (cpu, cpu_evidence)
    rows[(family, "gpu", p)] = (gpu[p], _R)
    rows[(family, "tpu", p)] = ("direct", _R if p == "default" else
                                "rule: TPU FFT ignores precision (jax issue 9881)")
  return rows


#: (family, backend, precision class) -> (form, evidence). The one place "auto" is decided.
FORM_TABLE: dict[tuple[str, str, str], tuple[str, str]] = {
    **_rows("siconv", "fft", _CPU, {"highest": "fft", "high": "direct", "default": "direct"}),
    **_rows("grouped", "fft", _CPU, {p: "direct" for p in PRECISIONS}),
    **_rows("large_kernel", "fft", _CPU, {p: "direct" for p in PRECISIONS}),
    **_rows("conv3d", "fft", _CPU, {p: "direct" for p in PRECISIONS}),
    **_rows("conv2d", "direct", _CPU, {p: "direct" for p in PRECISIONS}),
}

# Lowering platforms (jax.lax.platform_dependent's names) -> table backends.
_PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


def check_impl(impl: str) -> str:
  """``impl`` in the canonical vocabulary: "auto", "direct" or "fft"; "xla" is a deprecated alias
  of "direct" (DeprecationWarning). Anything else is a one-line ValueError."""
  if impl in _ALIASES:
    warnings.warn(f"impl={impl!r} is deprecated; use impl={_ALIASES[impl]!r}", DeprecationWarning,
                  stacklevel=3)
    return _ALIASES[impl]
  if impl not in IMPLS:
    raise ValueError(f"unknown impl {impl!r}; valid: {', '.join(IMPLS)}")
  return impl


def precision_class(precision: PrecisionLike) -> str:
  """"highest", "high" or "default": the table's key for a precision (a pair counts as its
  stronger member; None is "default")."""
  p = canonical_precision(precision)
  if isinstance(p, tuple):
    classes = [precision_class(q) for q in p]
    return min(classes, key=PRECISIONS.index)
  if p is None or p == lax.Precision.DEFAULT:
    return "default"
  return "highest" if p == lax.Precision.HIGHEST else "high"


def auto_form(family: str, backend: str, precision: PrecisionLike) -> str:
  """The form "auto" takes for a family on a backend ("cpu", "gpu", "tpu"; lowering platforms
  "cuda" and "rocm" count as "gpu") at a precision."""
  if family not in FAMILIES:
    raise ValueError(f"unknown layer family {family!r}; valid: {', '.join(FAMILIES)}")
  backend = _PLATFORMS.get(backend, backend)
  if backend not in BACKENDS:
    raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
  return FORM_TABLE[(family, backend, precision_class(precision))][0]


def forms_by_platform(impl: str, family: str, precision: PrecisionLike) -> dict[str, str]:
  """{lowering platform: form} for impl ("auto" consults `FORM_TABLE`; "direct" and "fft" are
  the same on every platform)."""
  impl = check_impl(impl)
  if impl != "auto":
    return {p: impl for p in _PLATFORMS}
  return {p: auto_form(family, b, precision) for p, b in _PLATFORMS.items()}


def by_platform(run: Callable, forms: dict[str, str], *args):
  """``run(form, *args)`` with the form chosen per lowering platform (`forms`, as
  `forms_by_platform` gives it); a plain call when every platform agrees."""
  distinct = set(forms.values())
  if len(distinct) == 1:
    return run(distinct.pop(), *args)
  branches = {p: functools.partial(run, f) for p, f in forms.items()}
  # Any other lowering platform gets the direct form, which every backend has.
  return jax.lax.platform_dependent(*args, default=functools.partial(run, "direct"), **branches)


def table_rows() -> list[tuple[str, str, str, str, str]]:
  """(family, backend, precision, form, evidence) for every entry, for docs and tests."""
  return [(*key, *value) for key, value in FORM_TABLE.items()]
