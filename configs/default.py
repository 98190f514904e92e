r"""The paper's settings (Dieng & Paisley, 2019, §5.2) on fixed-binarization MNIST.

Runtime (AMD EPYC, one TensorFlow thread): ~260 CPU-hours for REM v2, ~170 for the IWAE
(600,000 steps at the CPU-seconds per step of results/paper_regime.json).

Command (from the repository root):

  python run.py --method=rem_v2 --workdir=runs/paper_rem_v2
  python run.py --config=configs/default.py --config.method=iwae  # same, other method

`rem_tf.experiment.default_config()` as it is (without --config, run.py and `rem-tf`
use it too; the comments in rem_tf/experiment/defaults.py say what each field means):
latent 20, encoder and decoder with two tanh layers of 200, K = 1000 particles
for training and testing, batch 20, Adam with initial learning rate 1e-3 and
the Burda et al. schedule for both optimizers, seed 2019, 200 epochs on
`binarized_mnist` (Larochelle & Murray; train + validation = 60,000 images as
in the paper, evaluated on the 10,000 test images with K = 5000).

3,000 steps per epoch, 600,000 in all; the paper used one V100 (AWS P3).
The data: TFDS `binarized_mnist` (prepared by TFDS, downloaded on first use), or
the `.amat` files with `--config.data.source=files --config.data.data_dir=DIR`.
`--dataset=mnist`, `--dataset=omniglot` or `--dataset=tfds:<name>` (any TFDS
image dataset) switch data set (see also the `paper_*.py` configs); your own
images: `--config.data.source=npz --config.data.path=mine.npz`.
Offline, the TFDS download fails within seconds with the list of ways to get
the data (the `.amat` files, TFDS elsewhere).
"""

from rem_tf.experiment import default_config


def get_config():
    """Returns the paper configuration."""
    config = default_config()
    return config
