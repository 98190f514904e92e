r"""The model zoo's runs: the paper's 200 epochs at K = 50, on real MNIST from the offline copy.

Runtime (AMD EPYC, one TensorFlow thread on a core of its own, two runs at once): 1.8
CPU-hours for the IWAE, 2.0 for the VAE, 2.8 for REM v2, 2.9 for REM v1 (results/zoo.md, from
the runs' times.csv; their wall time, up to 1.8x that, is there too: part of it was an idle
wait between epochs that the data pipeline no longer has).

Command (from the repository root; one resumable run directory per method, the
zoo's presets are made from them by experiments/zoo.py):

  python run.py --config=configs/zoo.py --method=rem_v2 --mode=train \
      --workdir=../runs/zoo/rem_v2

`configs/paper_regime.py` (the paper's networks 20-200-200-784 tanh, batch 20,
Adam 1e-3 with ε = 1e-4 and the Burda schedule for both optimizers, seed 2019,
decoder output bias at zero; 60,000 training digits dynamically binarized, the
10,000 test digits with a fixed binarization) with K = 50 particles (Burda et
al.'s largest k) for the paper's 200 epochs = 600,000 steps. A checkpoint is
kept every 10 epochs (30,000 steps) with its wall and CPU seconds in
`kept_checkpoints/times.csv`, for the learning curves; the same command again
resumes a stopped run.
"""

import pathlib
import runpy

# The config files are files, not a package: runpy reads the sibling from any entry point.
paper_regime = runpy.run_path(str(pathlib.Path(__file__).with_name("paper_regime.py")))

STEPS_PER_EPOCH = 3000  # 60,000 digits / batch 20


def get_config():
    """Returns the zoo configuration."""
    config = paper_regime["get_config"]()
    config.training.num_particles = 50
    config.training.epochs = 200
    config.training.keep_checkpoint_every_steps = 10 * STEPS_PER_EPOCH
    config.training.checkpoint_every_steps = 1000
    return config
