"""Scale-equivariance checks, measured the paper's way (DESIGN.md §4), for users and tests.

The error of a feature map under rescaling: take the map of an image with the object at size
s_ref and the map of the same object at size s_other, crop both to the object (minus the border
the valid convolutions removed), resize the second bicubically to the first's size and report
||a - b||^2 / ||a||^2. 0 means perfectly equivariant; about 1 or more means unrelated.

Models with a scale axis (B, S, H, W, C) (hermite, disco, dss, gauss_der, conv3d) are compared
unshifted by default, S * C channels as the paper does. For the scale-channel models a rescaling
should also shift the scale axis (covariance), which that measure counts as error: with
``scale_ratio`` the other map's scale axis is shifted first (`metrics.scale_axis_shift`), and
`scale_axis_ratio` gives the ratio of the models whose scale series is geometric. Measured at
random initialisation on two emoji icons (key 0; mean over the six pairs), unshifted -> shifted:
gauss_der stage1 0.092 -> 0.018, stage2 0.150 -> 0.040; dss stage1 0.107 -> 0.047, stage2 0.127
-> 0.100; hermite stage1 0.81 -> 0.81 and disco 0.80 -> 0.79 (their random-init maps hardly
covary at all; stage2's 36-pixel maps cannot be cropped to a 17-pixel object).

>>> err = model_equivariance_errors(model, variables, data)   # {'stage1': (n, m, 6), ...}
>>> cov = model_equivariance_errors(model, variables, data, scale_ratio=scale_axis_ratio(model))
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from stir_jax import metrics
from stir_jax.data import stir_file

SPLITS = {"train": 0, "valid": 1, "test": 2}


def scale_equivariance_error(features: Callable[[np.ndarray], np.ndarray],
                             image_ref: np.ndarray, scale_ref: int, position_ref,
                             image_other: np.ndarray, scale_other: int, position_other) -> float:
  """Error of `features` (image (64, 64, C) -> map (H, W, C')) between two sizes of one object."""
  a = metrics.crop_to_object(np.asarray(features(image_ref)), scale_ref, position_ref)
  b = metrics.crop_to_object(np.asarray(features(image_other)), scale_other, position_other)
  return metrics.equivariance_error(a, b)


def scale_axis_ratio(model) -> float | None:
  """Ratio of neighbouring scale channels' scales (channel s + 1's over channel s's) of a model's
  scale axis, for `model_equivariance_errors(..., scale_ratio=...)`; None for a model without
  one or whose scale series is not geometric.

  hermite 2**(1/3) (basis scales 2 .. 4), disco 2**(1/3) (1 .. 2), dss its base (2: dilations
  1, 2, 4), gauss_der its scale_ratio (sqrt(2)). conv3d: None (its scale axis is the SiConv kernel
  sizes 7, 9, 11, ..., an arithmetic series); the other models have no scale axis in aux.
  """
  ratio = getattr(model, "scale_axis_ratio", None)
  return float(ratio()) if callable(ratio) else None


def model_equivariance_errors(model, variables, data: stir_file.StirData, split: str = "test",
                              stages=("stage1", "stage2"), batch_size: int = 48,
                              scale_ratio: float | None = None) -> dict[str, np.ndarray]:
  """Errors of the model's intermediate maps for every object of a split.

  aux[stage] is (B, H, W, C), or (B, S, H, W, C) for models with a scale axis.
  scale_ratio: None (default, the paper's measure): the S maps per channel are compared together
    as S * C channels, unshifted. A number (`scale_axis_ratio(model)`, > 1 when the scale grows
    with the channel index): the scale-covariant measure; for a pair (s_ref, s_other) the other
    map's channel s - k is compared with the reference's channel s, k = round(log(s_ref /
    s_other) / log(scale_ratio)) (a larger object moves the response to higher channels), over
    the S - |k| channels present in both (`metrics.shifted_equivariance_error`; NaN if none).
    Needs every stage to have a scale axis.
  Returns {stage: (num_classes, num_instances, 6)} in metrics.EQUIVARIANCE_PAIRS order.
  The same as `feature_map_errors(equivariance_maps(...), scale_ratio)`; compute the maps once
  to measure both ways.
  """
  return feature_map_errors(equivariance_maps(model, variables, data, split, stages, batch_size),
                            scale_ratio)


def map_positions(data: stir_file.StirData, split: str = "test") -> np.ndarray:
  """(n, m, 6, 2): every object's top-left corner at the sizes of metrics.EQUIVARIANCE_SCALES."""
  idx = [stir_file.index_of_scale(sc) for sc in metrics.EQUIVARIANCE_SCALES]
  return np.moveaxis(data.psts[SPLITS[split]][idx], 0, 2)


def equivariance_maps(model, variables, data: stir_file.StirData, split: str = "test",
                      stages=("stage1", "stage2"), batch_size: int = 48) -> dict:
  """The maps the equivariance error compares: {stage: (n, m, 6, [S,] H, W, C) maps,
  "positions": (n, m, 6, 2)} for the six sizes of metrics.EQUIVARIANCE_SCALES of every object."""
  s = SPLITS[split]
  idx = [stir_file.index_of_scale(sc) for sc in metrics.EQUIVARIANCE_SCALES]
  imgs = data.images(s)[idx]                            # (6, n, m, 64, 64, C)
  n, m = imgs.shape[1], imgs.shape[2]
  flat = np.moveaxis(imgs, 0, 2).reshape(n * m * 6, *imgs.shape[3:]).astype(np.float32) / 255.0
  apply = jax.jit(lambda v, x: model.apply(v, x, with_aux=True)[1])
  maps = {st: [] for st in stages}
  for start in range(0, len(flat), batch_size):
    aux = apply(variables, flat[start:start + batch_size])
    for st in stages:
      if st not in aux:
        raise ValueError(f"the model reports no {st!r} (it has {sorted(aux)})")
      maps[st].append(np.asarray(aux[st]))
  out = {"positions": map_positions(data, split)}
  for st in stages:
    fm = np.concatenate(maps[st]).reshape(n, m, 6, *maps[st][0].shape[1:])
    if fm.ndim not in (6, 7):
      raise ValueError(f"{st} has shape {fm.shape[3:]}; expected (H, W, C) or (S, H, W, C) maps")
    out[st] = fm
  return out


def feature_map_errors(maps: dict, scale_ratio: float | None = None) -> dict[str, np.ndarray]:
  """{stage: (n, m, 6)} errors of `equivariance_maps`' output; scale_ratio as in
  `model_equivariance_errors`."""
  pos = maps["positions"]
  out = {}
  for st, fm in maps.items():
    if st == "positions":
      continue
    if scale_ratio is not None and fm.ndim != 7:
      raise ValueError(f"scale_ratio needs a scale axis; {st} has (H, W, C) maps {fm.shape[3:]}")
    n, m = fm.shape[:2]
    errs = np.empty((n, m, 6))
    for c in range(n):
      for i in range(m):
        by_scale = {sc: fm[c, i, j] for j, sc in enumerate(metrics.EQUIVARIANCE_SCALES)}
        p = {sc: pos[c, i, j] for j, sc in enumerate(metrics.EQUIVARIANCE_SCALES)}
        errs[c, i] = metrics.object_equivariance_errors(by_scale, p, scale_ratio)
    out[st] = errs
  return out
