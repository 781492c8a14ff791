"""Evaluation of a finished (or interrupted) run directory: per-scale generalisation and plots.

`evaluate(workdir)` is what eval.py calls. It restores the best checkpoint that training kept and
writes, next to the run:
  generalization.csv     one row: model, data, eval (scenario), s17..s64 test accuracy in [0, 1]
  accuracy_vs_scale.png  test accuracy against object size, training scales shaded
  equivariance.npz/.png  stage1/stage2 equivariance errors (classes, instances, 6) (DESIGN.md §4)
                         (+ stage<k>_shifted: the scale-covariant measure, for models whose
                         scale axis is geometric, `equivariance.scale_axis_ratio`)
  indices.npz/.png       pooling models: the kernel scale each ScalePool chose, per test object
  levels.csv/.png        pyramid ensembles: accuracy and logit margin per size of each level alone
                         and of their average (the model's prediction)
  consistency.json       share of objects classified alike at all 48 sizes; for pooling models how
                         closely the chosen kernel size follows the object size (Spearman)
For an MNIST-scale run (`evaluate_mnist_scale`): the test accuracy, and its accuracy against the
scale factor s of the digits in accuracy_vs_scale.csv / .png.
"""
from __future__ import annotations

import csv
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stir_jax import models
from stir_jax.data import pipeline, stir_file
from stir_jax import metrics
from stir_jax.eval import equivariance
from stir_jax.eval.figures import (plot_accuracy_vs_scale, plot_equivariance, plot_indices,
                                   plot_levels)
from stir_jax.data import splits as inputs
from stir_jax import distributed
from stir_jax import checkpoints, experiment, pretrained, rundir
from stir_jax.errors import RunError


def load_run_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  cfg_path = workdir / "config.json"
  if not workdir.is_dir():
    raise RunError(f"{workdir} does not exist")
  if not cfg_path.exists():
    raise RunError(f"{workdir} is not a stir_jax run directory (no config.json)")
  try:
    return ml_collections.ConfigDict(json.loads(cfg_path.read_text()))
  except json.JSONDecodeError as e:
    raise RunError(f"{cfg_path} is not valid JSON ({e})") from None


def restore_model(workdir: pathlib.Path, config, data):
  """(model, best variables) of a run, checked against the data's channel and class counts:
  {"params"}, and "batch_stats" for models with batch norm."""
  model = experiment.build_model(config, data)
  size = inputs.image_size(data)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, size, size, data.num_channels), jnp.float32))
  target = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}
  if not (workdir / "checkpoints" / "best").is_dir():
    if pretrained.params_path(workdir).exists():  # a run kept as its params file alone
      return model, pretrained.read_checked(workdir, target)
    raise RunError(f"{workdir} has no best checkpoint (checkpoints/best) or "
                   f"{pretrained.PARAMS_FILE}; train it first")
  misfit = (f"the checkpoint in {workdir} does not fit model {config.model!r} with "
            f"{data.num_channels} channels and {data.num_classes} classes")
  ckpt = checkpoints.Checkpoints(workdir)
  try:
    variables = {"params": ckpt.restore_best(target["params"])[0]}
    if "batch_stats" in target:
      variables["batch_stats"] = ckpt.restore_best_batch_stats(target["batch_stats"])
  except RunError:
    raise
  except Exception as e:  # orbax reports structure mismatches in many exception types
    raise RunError(f"{misfit}: {str(e).splitlines()[0][:200]}") from None
  finally:
    ckpt.close()
  try:
    models.check_params(target, variables)
  except ValueError as e:
    raise RunError(f"{misfit}: {e}") from None
  return model, variables


def dataset_name(config) -> str:
  return pathlib.Path(str(config.dataset)).stem


def evaluate(workdir: str | pathlib.Path, progress: bool = False) -> dict | None:
  """Restores the run's best parameters and writes every evaluation output (see module doc).

  With several processes all of them restore the checkpoint (orbax does that together) and
  process 0 alone evaluates and writes; the others return None.
  """
  workdir = pathlib.Path(workdir)
  config = load_run_config(workdir)
  data = inputs.load_dataset(config)
  model, variables = restore_model(workdir, config, data)
  if not distributed.is_main():
    return None
  if inputs.is_mnist_scale(data):
    return evaluate_mnist_scale(workdir, config, data, model, variables)
  # One pass over the test split (all 48 sizes): predictions, pool indices, the test metrics and
  # the maps of the equivariance error.
  # a model of one's own without with_aux: accuracies and consistency only
  has_aux = models.lookup(config.model).aux
  ndims = {st: _map_ndim(model, variables, data, st) if has_aux else 0
           for st in ("stage1", "stage2")}
  stages = tuple(st for st, nd in ndims.items() if nd in (4, 5))
  per_object = predict_test_split(model, variables, data, config.eval_batch_size, maps=stages,
                                  with_aux=has_aux, progress=progress)
  test = test_metrics(per_object, config.scenario)

  name = dataset_name(config)
  row = {"model": config.model, "data": name, "eval": config.scenario, **test["per_scale"]}
  write_generalization_csv(workdir / "generalization.csv", [row])
  plot_accuracy_vs_scale(workdir / "accuracy_vs_scale.png", test["per_scale"],
                         pipeline.scales_for(config.scenario, "train"),
                         title=f"{config.model} on {name}, scenario {config.scenario}: "
                               f"test accuracy {test['accuracy']:.1%}")

  if "level_pred" in per_object:
    rows = level_rows(per_object, data.lbls[2], _level_names(model, variables, data.images(2)))
    write_levels_csv(workdir / "levels.csv", rows)
    plot_levels(workdir / "levels.png", rows, pipeline.scales_for(config.scenario, "train"),
                title=f"{config.model} on {name}, scenario {config.scenario}: its pyramid levels")

  consistency = {"prediction_consistency": prediction_consistency(per_object["pred"]),
                 "correct_at_all_scales": float(np.mean(np.all(per_object["correct"], axis=0)))}
  if models.is_pooling(config.model):
    np.savez_compressed(workdir / "indices.npz", **{k: v for k, v in per_object.items()
                                                     if k.startswith(("pool", "scale"))})
    for pool in ("pool1", "pool2"):
      consistency[f"{pool}_spearman"] = index_size_correlation(per_object[pool], per_object["scale"])
    plot_indices(workdir / "indices.png", per_object, title=f"{config.model} on {name}")
  rundir.write_json(workdir / "consistency.json", consistency)

  errors, shifted = {}, {}
  if stages:
    maps = per_object.pop("maps")
    errors = equivariance.feature_map_errors(maps)
    # models whose scale axis is a geometric series (hermite, disco, dss, gauss_der): also the
    # scale-covariant measure, the other map's scale axis shifted by the size ratio
    ratio = equivariance.scale_axis_ratio(model)
    if ratio is not None and all(ndims[st] == 5 for st in stages):
      shifted = equivariance.feature_map_errors(maps, scale_ratio=ratio)
    np.savez_compressed(workdir / "equivariance.npz", pairs=np.array(metrics.EQUIVARIANCE_PAIRS),
                        **errors, **{f"{k}_shifted": v for k, v in shifted.items()})
    plot_equivariance(workdir / "equivariance.png", errors, title=f"{config.model} on {name}")
  out = {"test_accuracy": test["accuracy"], "per_scale": test["per_scale"],
         "consistency": consistency,
         "equivariance": {k: float(np.nanmean(v)) for k, v in errors.items()}}
  if progress:
    written = ["generalization.csv", "accuracy_vs_scale.png", "consistency.json"]
    written += ["indices.npz", "indices.png"] if models.is_pooling(config.model) else []
    written += ["equivariance.npz", "equivariance.png"] if stages else []
    written += ["levels.csv", "levels.png"] if "level_pred" in per_object else []
    print(f"wrote {', '.join(written)} in {workdir}", flush=True)
  if shifted:
    out["equivariance_shifted"] = {k: float(np.nanmean(v)) for k, v in shifted.items()}
  return out


# Bins of the MNIST-scale scale factor s for the accuracy against scale.
SCALE_BIN_EDGES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def evaluate_mnist_scale(workdir: pathlib.Path, config, data, model, variables) -> dict:
  """The MNIST-scale test pass: accuracy and loss over the test split (as training's results.json),
  and the accuracy per bin of the scale factor s (SCALE_BIN_EDGES), written to
  accuracy_vs_scale.csv and accuracy_vs_scale.png."""
  norm = inputs.input_norm(config)
  images, labels = data.images["test"], data.labels["test"]
  scales = data.scales["test"]

  @jax.jit
  def summarize(v, x, y):
    x = x.astype(jnp.float32)[..., None] / 255.0
    if norm is not None:
      x = (x - norm[0]) / norm[1]
    logits = model.apply(v, x).astype(jnp.float32)
    return jnp.argmax(logits, -1), metrics.cross_entropy(logits, y)

  preds, losses = [], []
  batch = config.eval_batch_size
  for start in range(0, len(labels), batch):
    pred, loss = jax.device_get(summarize(variables, images[start:start + batch],
                                          labels[start:start + batch]))
    preds.append(pred)
    losses.append(loss)
  correct = np.concatenate(preds) == labels
  loss = np.concatenate(losses)
  edges = np.asarray(SCALE_BIN_EDGES)
  which = np.clip(np.searchsorted(edges, scales, side="right") - 1, 0, len(edges) - 2)
  rows = []
  for b in range(len(edges) - 1):
    sel = which == b
    rows.append({"scale_min": float(edges[b]), "scale_max": float(edges[b + 1]),
                 "count": int(sel.sum()),
                 "accuracy": metrics.accuracy(correct[sel].sum(), sel.sum())})
  path = workdir / "accuracy_vs_scale.csv"
  with open(path.with_suffix(".csv.tmp"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  path.with_suffix(".csv.tmp").replace(path)
  accuracy = float(correct.mean())
  _plot_scale_bins(workdir / "accuracy_vs_scale.png", rows,
                   f"{config.model} on {dataset_name(config)}: test accuracy {accuracy:.2%}")
  return {"test_accuracy": accuracy, "test_loss": float(loss.mean()),
          "test_count": int(len(labels)), "per_scale_bin": rows}


def _plot_scale_bins(path: pathlib.Path, rows: list[dict], title: str) -> None:
  plt = _plt()
  centres = [(r["scale_min"] + r["scale_max"]) / 2 for r in rows]
  fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
  ax.plot(centres, [100 * r["accuracy"] for r in rows], marker="o", color="tab:blue")
  ax.set(xlabel="scale factor s of the digit", ylabel="test accuracy (%)", title=title,
         xlim=(SCALE_BIN_EDGES[0], SCALE_BIN_EDGES[-1]))
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _map_ndim(model, variables, data, stage: str) -> int:
  x = jnp.zeros((1, 64, 64, data.num_channels), jnp.float32)
  aux = jax.eval_shape(lambda v, x: model.apply(v, x, with_aux=True)[1], variables, x)
  return len(aux[stage].shape) if stage in aux else 0


def predict_test_split(model, variables, data, batch_size: int,
                       maps: tuple[str, ...] = (), with_aux: bool = True,
                       progress: bool = False) -> dict[str, np.ndarray]:
  """Per test object and scale (48, n, m): predicted class, loss, correctness, and for pooling
  models the kernel scale index each pool chose, per channel (48, n, m, C).

  For slice/energy pooling that index is the pool's own (one per channel); for pixel/soft pooling
  it is the index chosen at the position of the channel's strongest pooled response, the unit that
  the global max (stage 2) reads. A channel whose output is 0 everywhere on an image (no
  response after the ReLU) gets -1: it chose no scale.

  maps: stages (e.g. ("stage1", "stage2")) whose maps the same pass also keeps for the images at
  the sizes of the equivariance error: result["maps"] is then `equivariance.equivariance_maps`'
  output for the test split, without a second compilation and pass. Every batch has batch_size
  images (the last one padded), so the model compiles once.
  """
  imgs = data.images(2)                                 # (48, n, m, 64, 64, C)
  shape = imgs.shape[:3]
  per_scale = shape[1] * shape[2]
  flat = imgs.reshape(-1, *imgs.shape[3:])
  labels = data.lbls[2].reshape(-1)
  # flat is scale-major: rows [i * per_scale, (i + 1) * per_scale) hold size index i
  eq_index = [stir_file.index_of_scale(sc) for sc in metrics.EQUIVARIANCE_SCALES]

  def summarize(v, x, y):
    logits, aux = model.apply(v, x, with_aux=True) if with_aux else (model.apply(v, x), {})
    out = {"pred": jnp.argmax(logits, -1), "loss": metrics.cross_entropy(logits, y)}
    level_logits = aux.get("level_logits")              # pyramid ensembles: (levels, B, classes)
    if level_logits is not None:                        # each level's vote, then the average's
      every = jnp.concatenate([level_logits, logits[None]])
      top2 = jax.lax.top_k(every, 2)[0]
      out["level_pred"] = jnp.argmax(every, -1).T       # (B, levels + 1)
      out["level_margin"] = (top2[..., 0] - top2[..., 1]).T
    for i in (1, 2):
      idx = aux.get(f"pool{i}_indices")
      if idx is None:
        continue
      act = aux[f"stage{i}"].reshape(idx.shape[0], -1, idx.shape[-1])
      if idx.ndim == 4:                                 # (B, H, W, C): pick at each channel's max
        where = jnp.argmax(act, axis=1)                 # (B, C)
        idx = jnp.take_along_axis(idx.reshape(act.shape), where[:, None, :], axis=1)[:, 0]
      # a channel silent on this image (ReLU output all 0) chose nothing: -1
      out[f"pool{i}"] = jnp.where(jnp.max(act, axis=1) > 0, idx, -1)
    return out, {st: aux[st] for st in maps}

  fn = jax.jit(summarize)
  parts, kept = [], {st: [] for st in maps}
  starts = range(0, len(flat), batch_size)
  if progress:  # a bar over the test split (the first batch compiles)
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
    starts = tqdm(starts, desc="test split, 48 sizes", unit="batch", dynamic_ncols=True)
  for start in starts:
    stop = min(start + batch_size, len(flat))
    x = flat[start:stop].astype(np.float32) / 255.0
    y = labels[start:stop]
    if stop - start < batch_size:                       # pad: one compiled shape for every batch
      x = np.concatenate([x, np.zeros((batch_size - len(x), *x.shape[1:]), x.dtype)])
      y = np.concatenate([y, np.zeros(batch_size - len(y), y.dtype)])
    out, aux = fn(variables, x, y)
    parts.append({k: v[:stop - start] for k, v in jax.device_get(out).items()})
    rows = np.arange(start, stop)
    want = np.isin(rows // per_scale, eq_index)
    if maps and want.any():
      for st in maps:
        kept[st].append((rows[want], np.asarray(aux[st])[:stop - start][want]))
  out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  result = {k: v.reshape(*shape, *v.shape[1:]) for k, v in out.items()}
  result["correct"] = (out["pred"] == labels).reshape(shape)
  result["scale"] = data.scls[2].astype(np.int32)
  if maps:
    result["maps"] = {"positions": equivariance.map_positions(data)}
    for st in maps:
      rows = np.concatenate([r for r, _ in kept[st]])     # increasing: batches come in order
      values = np.concatenate([v for _, v in kept[st]])
      stacked = np.stack([values[rows // per_scale == i].reshape(shape[1], shape[2],
                                                                  *values.shape[1:])
                          for i in eq_index])            # (6, n, m, ...), EQUIVARIANCE_SCALES order
      result["maps"][st] = np.moveaxis(stacked, 0, 2)   # (n, m, 6, ...)
  return result


def per_size_sums(scale: np.ndarray, values) -> np.ndarray:
  """Sums of values per object size (48: s17..s64) over objects whose sizes are `scale` (same
  shape; the split's own size order, not assumed)."""
  return np.bincount(np.asarray(scale).reshape(-1) - metrics.MIN_SCALE,
                     weights=np.asarray(values, np.float64).reshape(-1),
                     minlength=len(metrics.SCALES))


def test_metrics(per_object: dict[str, np.ndarray], scenario: int) -> dict:
  """Loss and accuracy on the scenario's test sizes and accuracy per size, from the per-object
  outputs of `predict_test_split` (the sums of `metrics.batch_stats`, merged and divided once)."""
  def per_scale(values):
    return per_size_sums(per_object["scale"], values)

  total = {"per_scale_correct": per_scale(per_object["correct"]),
           "per_scale_count": per_scale(np.ones(per_object["scale"].shape)),
           "per_scale_loss_sum": per_scale(per_object["loss"])}
  scenario_total = metrics.restrict(total, pipeline.scales_for(scenario, "test"))
  return {**metrics.finalize(scenario_total), "per_scale": metrics.per_scale_accuracy(
      total["per_scale_correct"], total["per_scale_count"])}


def prediction_consistency(pred: np.ndarray) -> float:
  """Share of objects (n, m) whose predicted class is the same at all sizes. pred: (S, n, m)."""
  return float(np.mean(np.all(pred == pred[:1], axis=0)))


def index_size_correlation(indices: np.ndarray, scales: np.ndarray) -> float:
  """Spearman rank correlation between object size and the chosen kernel scale index, over all
  objects, sizes and channels that chose a scale (index >= 0). indices (S, n, m, C), scales
  (S, n, m). 1: the chosen kernel grows exactly in step with the object; 0: unrelated. NaN when
  the indices never vary."""
  from scipy import stats
  idx = np.asarray(indices, np.float64)
  size = np.broadcast_to(np.asarray(scales)[..., None], idx.shape)
  keep = idx >= 0                                       # -1: the channel chose no scale
  idx, size = idx[keep], size[keep]
  if idx.size == 0 or np.all(idx == idx[0]):
    return float("nan")
  return float(stats.spearmanr(size, idx).statistic)


def _level_names(model, variables, imgs: np.ndarray) -> list[str]:
  """Each pyramid level's name, its image side ("64 px", "32 px", ...), read off the shapes of
  the model's own ``pyramid`` (aux) for the test images' shape; "level l" where the model has
  levels but no ``pyramid`` output."""
  shape = (1, *imgs.shape[3:])                          # imgs: (48, n, m, 64, 64, C)
  aux = jax.eval_shape(lambda x: model.apply(variables, x, with_aux=True)[1],
                       jax.ShapeDtypeStruct(shape, jnp.float32))
  if "pyramid" in aux:
    return [f"{level.shape[1]} px" for level in aux["pyramid"]]
  return [f"level {l}" for l in range(aux["level_logits"].shape[0])]


def level_rows(per_object: dict[str, np.ndarray], labels: np.ndarray,
               level_names: list[str]) -> list[dict]:
  """Per pyramid level of an ensemble (named by `_level_names`) and for the average of their
  logits that it predicts with: accuracy and mean margin (top logit minus the runner-up) per
  object size. per_object level_pred/level_margin: (48, n, m, levels + 1); labels (48, n, m)."""
  pred, margin = per_object["level_pred"], per_object["level_margin"]
  if pred.shape[-1] != len(level_names) + 1:
    raise ValueError(f"{pred.shape[-1] - 1} levels predicted, {len(level_names)} names")
  correct = pred == np.asarray(labels).reshape(pred.shape[:3])[..., None]
  count = per_size_sums(per_object["scale"], np.ones(per_object["scale"].shape))
  names = [*level_names, "average"]
  rows = []
  for k, level in enumerate(names):
    for quantity, values in (("accuracy", correct[..., k]), ("margin", margin[..., k])):
      sums = per_size_sums(per_object["scale"], values)
      rows.append({"level": level, "quantity": quantity,
                   **dict(zip(metrics.SCALE_COLUMNS, sums / count))})
  return rows


def write_levels_csv(path: pathlib.Path, rows: list[dict]) -> None:
  _write_per_size_csv(path, ["level", "quantity"], rows)


def write_generalization_csv(path: pathlib.Path, rows: list[dict]) -> None:
  _write_per_size_csv(path, ["model", "data", "eval"], rows)


def _write_per_size_csv(path: pathlib.Path, keys: list[str], rows: list[dict]) -> None:
  """rows with the key columns and s17..s64 (6 decimals), written whole or not at all."""
  fields = [*keys, *metrics.SCALE_COLUMNS]
  tmp = path.with_suffix(".csv.tmp")
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for r in rows:
      writer.writerow({k: (f"{r[k]:.6f}" if k in metrics.SCALE_COLUMNS else r[k]) for k in fields})
  tmp.replace(path)


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt
