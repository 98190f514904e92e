r"""The paper's settings on Omniglot (Burda et al.'s 28×28 split, Dieng & Paisley, 2019, §5.1).

Runtime (AMD EPYC, one TensorFlow thread): ~105 CPU-hours for REM v2, ~70 for the IWAE
(243,400 steps at the CPU-seconds per step of results/paper_regime.json).

Command (from the repository root), with `chardata.mat` from Burda et al. in DIR:

  python run.py --config=configs/paper_omniglot.py --config.data.data_dir=DIR \
      --workdir=runs/paper_omniglot

`configs/default.py` on Omniglot (24,345 training / 8,070 test images),
dynamically binarized for training and with a fixed binarization for the test
set. Only local files hold this split (TFDS's `omniglot` is another one).

1,217 steps per epoch, 200 epochs.
"""

from rem_tf.experiment import default_config


def get_config():
    """Returns the Omniglot paper configuration."""
    config = default_config()
    config.data.name = "omniglot"
    config.data.source = "files"
    config.data.train_split = "train"
    config.data.train_binarization = "dynamic"
    config.data.eval_binarization = "fixed"
    return config
