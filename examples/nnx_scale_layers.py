"""A Flax NNX model from stir_jax.nnx layers, trained with nnx.Optimizer and optax.

Self-contained (no dataset download; about a minute on a laptop CPU at the default 150 steps):

  python examples/nnx_scale_layers.py              # --steps 150
  python examples/nnx_scale_layers.py --steps 20   # a quick look

1. Data: four filled shapes (disk, square, triangle, ring) drawn anti-aliased at a random size and
   position on a 48x48 canvas (--canvas). Training sees sizes 18..30 px; the test also has smaller
   (12..17 px) and larger (31..44 px) objects, as STIR's Mid2Rest scenario (and
   examples/scale_layers.py, the Linen version, on 64x64). Other canvases scale these sizes.
2. Model: `stir_jax.nnx.SiConv2d` (a 5x5 base kernel applied at every size up to the image, with
   fused pixel-wise scale pooling), ReLU, global max, `nnx.Linear`.
3. Training: `nnx.Optimizer` with optax Adam, an `nnx.jit` step; then accuracy per size band.
"""
from __future__ import annotations

import argparse
import sys
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stir_jax.nnx import SiConv2d

SHAPES = ("disk", "square", "triangle", "ring")


def size_bands(canvas: int) -> dict[str, tuple[int, int]]:
  """Object sizes (smallest, largest) of the test bands; "train" is the training range.
  48: small 12-17, train 18-30, large 31-44."""
  small, lo, hi, large = (round(canvas * f) for f in (0.25, 0.375, 0.625, 0.92))
  return {"small": (small, lo - 1), "train": (lo, hi), "large": (hi + 1, large)}


def draw(shape: int, size: int, x: int, y: int, canvas: int, supersample: int = 4) -> np.ndarray:
  """One (canvas, canvas, 1) float32 image in [0, 1]: ``SHAPES[shape]`` filling the size x size box
  with top-left corner (x, y) (x the column), anti-aliased by supersampling."""
  n = size * supersample
  v, u = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1          # box coordinates in [-1, 1], v down
  r = np.hypot(u, v)
  mask = {"disk": r <= 1,
          "square": (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8),
          "triangle": (v <= 0.9) & (v >= -0.9 + 1.8 * np.abs(u)),
          "ring": (r <= 1) & (r >= 0.55)}[SHAPES[shape]]
  img = np.zeros((canvas, canvas, 1), np.float32)
  img[y:y + size, x:x + size, 0] = mask.reshape(size, supersample, size, supersample).mean((1, 3))
  return img


def make_split(n: int, sizes: tuple[int, int], canvas: int, rng: np.random.Generator):
  """n images with object sizes in [sizes[0], sizes[1]]: (images, labels, sizes)."""
  labels = rng.integers(0, len(SHAPES), n)
  size = rng.integers(sizes[0], sizes[1] + 1, n)
  corners = [rng.integers(0, canvas - s + 1, 2) for s in size]
  images = np.stack([draw(c, s, x, y, canvas) for c, s, (x, y) in zip(labels, size, corners)])
  return images, labels.astype(np.int32), size


class ScaleNet(nnx.Module):
  """SiConv2d with pixel pooling (8 channels, 5x5 base kernel), ReLU, global max, dense."""

  def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
    self.conv = SiConv2d(1, 8, kernel_size=5, pool="pixel", rngs=rngs)
    self.head = nnx.Linear(8, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    pooled, _ = self.conv(x)                                # (B, canvas - 4, same, 8)
    return self.head(jnp.max(nnx.relu(pooled), axis=(1, 2)))


def loss_fn(model: ScaleNet, x: jax.Array, y: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model: ScaleNet, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
  loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def predict(model: ScaleNet, x: jax.Array) -> jax.Array:
  return jnp.argmax(model(x), axis=-1)


def band_accuracy(model, images, labels, sizes, bands, batch: int = 64) -> dict[str, float]:
  """Test accuracy per size band, keyed "<band> <smallest>-<largest>"."""
  pred = np.concatenate([np.asarray(predict(model, images[i:i + batch]))
                         for i in range(0, len(images), batch)])
  return {f"{band} {lo}-{hi}": float(np.mean(pred[(sizes >= lo) & (sizes <= hi)]
                                             == labels[(sizes >= lo) & (sizes <= hi)]))
          for band, (lo, hi) in bands.items()}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=150, help="training steps")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
  parser.add_argument("--train-size", type=int, default=1024, help="training images")
  parser.add_argument("--test-size", type=int, default=600, help="test images (all bands)")
  parser.add_argument("--canvas", type=int, default=48, help="image side, at least 16")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.steps < 1 or args.batch < 1 or args.train_size < args.batch or args.test_size < 1:
    parser.error("need --steps >= 1, --train-size >= --batch >= 1 and --test-size >= 1")
  if not args.lr > 0:
    parser.error("need --lr > 0")
  if args.canvas < 16:
    parser.error("need --canvas >= 16")

  rng = np.random.default_rng(args.seed)
  bands = size_bands(args.canvas)
  train_x, train_y, _ = make_split(args.train_size, bands["train"], args.canvas, rng)
  test_x, test_y, test_s = make_split(args.test_size, (bands["small"][0], bands["large"][1]),
                                      args.canvas, rng)

  model = ScaleNet(len(SHAPES), rngs=nnx.Rngs(args.seed))
  optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
  start = time.perf_counter()
  losses = []
  for _ in range(args.steps):
    idx = rng.integers(0, len(train_x), args.batch)
    losses.append(float(train_step(model, optimizer, train_x[idx], train_y[idx])))
  seconds = time.perf_counter() - start
  accuracy = band_accuracy(model, test_x, test_y, test_s, bands)
  loss_last = float(np.mean(losses[-10:]))
  print(f"ScaleNet (stir_jax.nnx.SiConv2d + pixel pool): {args.steps} steps in {seconds:.1f} s, "
        f"loss {losses[0]:.3f} -> {loss_last:.3f}")
  print("  test accuracy by object size: "
        + ", ".join(f"{band} {a:.1%}" for band, a in accuracy.items()))
  return {"loss_first": losses[0], "loss_last": loss_last, "accuracy": accuracy,
          "seconds": seconds}


if __name__ == "__main__":
  main()
  sys.exit(0)
