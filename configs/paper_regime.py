r"""The paper's training regime (§5.2) on real MNIST from the offline copy.

Runtime (AMD EPYC, one TensorFlow thread, two runs at once): 2.6 CPU-hours (5.1 h wall) for
REM v2, 1.7 (2.0 h wall) for the IWAE, training only (results/paper_regime.json).

Command (from the repository root; one run directory per method):

  python run.py --config=configs/paper_regime.py --method=rem_v2 \
      --workdir=runs/paper_regime/rem_v2
  python run.py --config=configs/paper_regime.py --method=iwae --num_particles=100 \
      --workdir=runs/particle_sweep/iwae-k100     # the particle sweep: other K

`configs/default.py` (latent 20, 2×200 tanh, K = 1000, batch 20, Adam 1e-3 with
ε = 1e-4 and the Burda schedule for both optimizers, seed 2019) on grey-level
MNIST (the offline copy: 60,000 training digits, dynamically binarized; the
10,000 test digits with a fixed binarization), for 2 epochs = 6,000 steps
(resume with more `--epochs` to go on). The decoder's output bias starts at
zero, as in the authors' code (`model.output_bias_from_data=True` is Burda et
al.'s data-mean start). Evaluated with K = 5000 on all test digits.
"""

from rem_tf.experiment import default_config


def get_config():
    """Returns the paper-regime configuration."""
    config = default_config()
    config.data.name = "mnist"
    config.data.source = "offline"
    config.data.train_split = "train"
    config.model.output_bias_from_data = False
    config.training.epochs = 2
    return config
