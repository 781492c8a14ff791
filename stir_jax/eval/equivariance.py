"""Scale-equivariance checks, measured the paper's way (DESIGN.md §4), for users and tests.

The error of a feature map under rescaling: take the map of an image with the object at size
s_ref and the map of the same object at size s_other, crop both to the object (minus the border
the valid convolutions removed), resize the second bicubically to the first's size and report
||a - b||^2 / ||a||^2. 0 means perfectly equivariant; about 1 or more means unrelated.

>>> err = model_equivariance_errors(model, variables, data)   # {'stage1': (n, m, 6), ...}
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


def model_equivariance_errors(model, variables, data: stir_file.StirData, split: str = "test",
                              stages=("stage1", "stage2"), batch_size: int = 48) -> dict[str, np.ndarray]:
  """Errors of the model's intermediate maps for every object of a split.

  aux[stage] is (B, H, W, C), or (B, S, H, W, C) for models with a scale axis (SESN/DISCO), whose
  S maps per channel are compared together as S * C channels.
  Returns {stage: (num_classes, num_instances, 6)} in metrics.EQUIVARIANCE_PAIRS order.
  """
  s = SPLITS[split]
  idx = [stir_file.index_of_scale(sc) for sc in metrics.EQUIVARIANCE_SCALES]
  imgs = data.imgs[s][idx]                              # (6, n, m, 64, 64[, C])
  if imgs.ndim == 5:
    imgs = imgs[..., None]
  pos = data.psts[s][idx]                               # (6, n, m, 2)
  n, m = imgs.shape[1], imgs.shape[2]
  flat = np.moveaxis(imgs, 0, 2).reshape(n * m * 6, *imgs.shape[3:]).astype(np.float32) / 255.0
  apply = jax.jit(lambda v, x: model.apply(v, x, with_aux=True)[1])
  maps = {st: [] for st in stages}
  for start in range(0, len(flat), batch_size):
    aux = apply(variables, flat[start:start + batch_size])
    for st in stages:
      if st not in aux:
        raise ValueError(f"the model reports no {st!r} (it has {sorted(aux)})")
      fmap = np.asarray(aux[st])
      if fmap.ndim == 5:                                # (B, S, H, W, C) -> (B, H, W, S * C)
        fmap = np.moveaxis(fmap, 1, 3).reshape(*fmap.shape[:1], *fmap.shape[2:4], -1)
      maps[st].append(fmap)
  out = {}
  for st in stages:
    fm = np.concatenate(maps[st]).reshape(n, m, 6, *maps[st][0].shape[1:])
    if fm.ndim != 6:
      raise ValueError(f"{st} has shape {fm.shape[3:]}; expected (H, W, C) or (S, H, W, C) maps")
    errs = np.empty((n, m, 6))
    for c in range(n):
      for i in range(m):
        by_scale = {sc: fm[c, i, j] for j, sc in enumerate(metrics.EQUIVARIANCE_SCALES)}
        p = {sc: pos[j, c, i] for j, sc in enumerate(metrics.EQUIVARIANCE_SCALES)}
        errs[c, i] = metrics.object_equivariance_errors(by_scale, p)
    out[st] = errs
  return out
