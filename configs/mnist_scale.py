"""The MNIST-scale benchmark's protocol (Sosnovik, Szmaja, Smeulders, ICLR 2020; the sesn
repository's experiments_mnist.sh and train_scale_mnist.py): Adam with lr 0.01, batch 128, 60
epochs, the rate x 0.1 after epochs 20 and 40, inputs normalised with mean 0.0607 and std 0.2161,
no early stopping, the parameters of the best validation epoch tested; six realisations of the
data (seeds 0..5), one run per realisation.

Command:  python -m stir_jax.data mnist-scale --idx-dir MNIST_DIR --seed 0 \\
              --out data/mnist_scale_0.npz
          python train.py --config=configs/mnist_scale.py --workdir=runs/mnist_cnn_28_0
          (--config.model=<a stir_jax.models.mnist_scale factory>,
           --config.dataset=data/mnist_scale_<k>.npz)
Runtime:  an epoch is 79 steps of 128 images plus 2 000 validation images; the full 60 epochs
          were not run on this project's 2-core CPU.
Result:   not measured here; compare with the SESN paper's Table 2 (MNIST-scale, 28x28, mean
          and std of the test error over the six realisations). Our realisations are drawn with
          numpy, not the published ones (stir_jax.data.mnist_scale).
The STIR fields scenario, kernel_size, interpolation and impl are not used by these models.
"""
from stir_jax import experiment


def get_config():
  config = experiment.default_config()
  config.model = "mnist_cnn_28"
  config.dataset = "data/mnist_scale_0.npz"
  config.learning_rate = 0.01
  config.lr_decay_epochs = (20, 40)
  config.lr_decay_factor = 0.1
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_epochs = 60
  config.patience = 0
  config.input_mean = 0.0607
  config.input_std = 0.2161
  config.seed = 0
  return config
