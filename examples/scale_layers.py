"""Your own Flax model from stir_jax layers: train it with optax, then measure its scale behaviour.

A self-contained example (no dataset download, about a minute on a laptop CPU):

  python examples/scale_layers.py                  # float32
  python examples/scale_layers.py --dtype bfloat16 # mixed precision: bfloat16 compute, float32 params

1. Data: four filled shapes (disk, square, triangle, ring) drawn anti-aliased at a random size and
   position on a 64x64 canvas. Training sees sizes 24..40 px only; the test has small (17..23 px)
   and large (41..56 px) objects, as in STIR's Mid2Rest scenario.
2. Two small models of the same pattern (one 5x5 conv layer with 8 channels, ReLU, global max,
   dense): `ScaleNet` uses the paper's layer, `stir_jax.layers.SiConv2d` with fused pixel-wise
   scale pooling (the 5x5 kernel is also applied resized to 7x7, 9x9, ..., 63x63 and every output
   pixel keeps its strongest response); `PlainNet` uses flax's nn.Conv.
3. Training: optax Adam, a jit-compiled step, the loss computed in float32.
4. Scale behaviour: accuracy per size band, and the equivariance error of the first layer's maps
   (`stir_jax.eval.equivariance.scale_equivariance_error`: the map of an object at size 48 against
   the bicubically resized map of the same object at size 32; 0 is perfectly equivariant).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Optional

from stir_jax import runtime

runtime.apply_xla_flags()  # optional: the CPU compiler flag the project's entry points use (faster convs)

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stir_jax.eval.equivariance import scale_equivariance_error
from stir_jax.layers import SiConv2d

CANVAS = 64
SHAPES = ("disk", "square", "triangle", "ring")
TRAIN_SIZES = (24, 40)
TEST_BANDS = {"small 17-23": (17, 23), "train 24-40": (24, 40), "large 41-56": (41, 56)}


def draw(shape: int, size: int, x: int, y: int, supersample: int = 4) -> np.ndarray:
  """One (64, 64, 1) float32 image in [0, 1]: shape `shape` filling a size x size box whose top-left
  corner is (x, y) (x = column), anti-aliased by supersampling."""
  n = size * supersample
  v, u = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1          # box coordinates in [-1, 1], v down
  r = np.hypot(u, v)
  mask = {"disk": r <= 1,
          "square": (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8),
          "triangle": (v <= 0.9) & (v >= -0.9 + 1.8 * np.abs(u)),
          "ring": (r <= 1) & (r >= 0.55)}[SHAPES[shape]]
  box = mask.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
  img = np.zeros((CANVAS, CANVAS, 1), np.float32)
  img[y:y + size, x:x + size, 0] = box
  return img


def make_split(n: int, sizes: tuple[int, int], rng: np.random.Generator):
  """n random images with object sizes in [sizes[0], sizes[1]]: (images, labels, sizes)."""
  labels = rng.integers(0, len(SHAPES), n)
  size = rng.integers(sizes[0], sizes[1] + 1, n)
  xs = [rng.integers(0, CANVAS - s + 1) for s in size]
  ys = [rng.integers(0, CANVAS - s + 1) for s in size]
  images = np.stack([draw(c, s, x, y) for c, s, x, y in zip(labels, size, xs, ys)])
  return images, labels.astype(np.int32), size


class ScaleNet(nn.Module):
  """SiConv2d (5x5 base kernel at every size up to the image, pixel-wise scale pooling), ReLU,
  global max, dense. ``dtype`` is the computation dtype (None: float32 for float32 images)."""
  num_classes: int
  dtype: Optional[Any] = None

  @nn.compact
  def __call__(self, x, with_aux: bool = False):
    pooled, indices = SiConv2d(8, kernel_size=5, pool="pixel", dtype=self.dtype, name="conv")(x)
    stage1 = nn.relu(pooled)                               # (B, 60, 60, 8)
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(jnp.max(stage1, axis=(1, 2)))
    return (logits, {"stage1": stage1, "indices": indices}) if with_aux else logits


class PlainNet(nn.Module):
  """The same pattern with one ordinary 5x5 convolution."""
  num_classes: int
  dtype: Optional[Any] = None

  @nn.compact
  def __call__(self, x, with_aux: bool = False):
    stage1 = nn.relu(nn.Conv(8, (5, 5), padding="VALID", dtype=self.dtype, name="conv")(x))
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(jnp.max(stage1, axis=(1, 2)))
    return (logits, {"stage1": stage1}) if with_aux else logits


def train(model: nn.Module, images, labels, steps: int, batch: int, seed: int):
  """Adam (lr 3e-3) on random batches; returns the trained variables and the loss curve."""
  variables = jax.jit(model.init)(jax.random.PRNGKey(seed), images[:1])
  tx = optax.adam(3e-3)
  opt_state = tx.init(variables)

  @jax.jit
  def step(variables, opt_state, x, y):
    def loss_fn(v):
      logits = model.apply(v, x).astype(jnp.float32)    # the loss in float32 whatever the dtype
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(variables)
    updates, opt_state = tx.update(grads, opt_state, variables)
    return optax.apply_updates(variables, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  losses = []
  for _ in range(steps):
    idx = rng.integers(0, len(images), batch)
    variables, opt_state, loss = step(variables, opt_state, images[idx], labels[idx])
    losses.append(float(loss))
  return variables, losses


def band_accuracy(model, variables, images, labels, sizes) -> dict[str, float]:
  predict = jax.jit(lambda v, x: jnp.argmax(model.apply(v, x), -1))
  pred = np.concatenate([np.asarray(predict(variables, images[i:i + 64]))
                         for i in range(0, len(images), 64)])
  return {band: float(np.mean(pred[(sizes >= lo) & (sizes <= hi)] ==
                              labels[(sizes >= lo) & (sizes <= hi)]))
          for band, (lo, hi) in TEST_BANDS.items()}


def equivariance(model, variables, pairs=((48, 32), (32, 17)), seed: int = 0) -> dict[str, float]:
  """Mean first-layer equivariance error over every shape, for each (reference, other) size pair,
  with both objects at random positions."""
  features = jax.jit(lambda x: model.apply(variables, x, with_aux=True)[1]["stage1"][0].astype(
      jnp.float32))
  rng = np.random.default_rng(seed)
  out = {}
  for ref, other in pairs:
    errs = []
    for shape in range(len(SHAPES)):
      p_ref = tuple(int(v) for v in rng.integers(0, CANVAS - ref + 1, 2))
      p_other = tuple(int(v) for v in rng.integers(0, CANVAS - other + 1, 2))
      errs.append(scale_equivariance_error(
          lambda img: features(img[None]), draw(shape, ref, *p_ref), ref, p_ref,
          draw(shape, other, *p_other), other, p_other))
    out[f"{ref} vs {other}"] = float(np.mean(errs))
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=150, help="training steps per model")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--train-size", type=int, default=1024, help="training images")
  parser.add_argument("--test-size", type=int, default=600, help="test images (sizes 17..56)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.steps < 1 or args.batch < 1 or args.train_size < args.batch or args.test_size < 1:
    parser.error("need --steps >= 1, --train-size >= --batch >= 1 and --test-size >= 1")
  dtype = None if args.dtype == "float32" else jnp.bfloat16

  rng = np.random.default_rng(args.seed)
  train_x, train_y, _ = make_split(args.train_size, TRAIN_SIZES, rng)
  test_x, test_y, test_s = make_split(args.test_size, (17, 56), rng)
  results = {}
  for name, model in (("ScaleNet (SiConv2d + pixel pool)", ScaleNet(len(SHAPES), dtype)),
                      ("PlainNet (nn.Conv)", PlainNet(len(SHAPES), dtype))):
    start = time.perf_counter()
    variables, losses = train(model, train_x, train_y, args.steps, args.batch, args.seed)
    seconds = time.perf_counter() - start
    acc = band_accuracy(model, variables, test_x, test_y, test_s)
    eq = equivariance(model, variables, seed=args.seed)
    results[name] = {"loss_first": losses[0], "loss_last": float(np.mean(losses[-10:])),
                     "accuracy": acc, "equivariance_error": eq, "seconds": seconds}
    print(f"{name}: {args.steps} steps in {seconds:.1f} s, loss {losses[0]:.3f} -> "
          f"{results[name]['loss_last']:.3f}")
    print("  test accuracy by object size: " +
          ", ".join(f"{band} {a:.1%}" for band, a in acc.items()))
    print("  first-layer equivariance error: " +
          ", ".join(f"size {pair} {e:.3f}" for pair, e in eq.items()))
  return results


if __name__ == "__main__":
  main()
  sys.exit(0)
