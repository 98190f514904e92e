"""The default experiment config: every field of a run, at the paper's settings.

`default_config()` is what `rem_tf.experiment.check_config` fills missing fields from and
checks field names against; the experiment files in the repository's `configs/` build on
it (`configs/default.py` returns it as it is).

Latent 20, encoder and decoder with two tanh layers of 200, K = 1000 particles for
training and testing, batch 20, Adam with initial learning rate 1e-3 and the Burda et al.
schedule for both optimizers, seed 2019, 200 epochs on `binarized_mnist` (train +
validation = 60,000 images as in the paper, evaluated on the 10,000 test images with
K = 5000).
"""

import ml_collections
from ml_collections import config_dict


def default_config():
    """The paper's settings (Dieng & Paisley, 2019, §5.2): every field a run reads, at its default.

    Returns:
      A new `ml_collections.ConfigDict` with the sections data, model, training, evaluation
      and distribute (see the comments in this function's source for what each field means).
    """
    config = ml_collections.ConfigDict()
    config.method = "rem_v2"  # any key of rem_tf.METHODS
    config.seed = 2019
    # Run directory; None: runs/<config file>-<method>-<dataset> under the current directory.
    config.workdir = config_dict.placeholder(str)

    config.data = ml_collections.ConfigDict()
    # binarized_mnist | mnist | omniglot | tfds:<any TFDS image dataset, e.g. fashion_mnist>
    # (with source "npz" only a label).
    config.data.name = "binarized_mnist"
    # auto | tfds | files | offline | npz (see rem_tf.data); None: "npz" when data.path is
    # set, "tfds" for binarized_mnist and tfds:<name> (prepared or downloaded by TFDS),
    # "auto" for the others.
    config.data.source = config_dict.placeholder(str)
    # Your own images (source "npz"): an .npz with arrays "train" and "test" (and
    # "validation") of any image shape; the model's input_shape is taken from them.
    config.data.path = config_dict.placeholder(str)
    config.data.data_dir = config_dict.placeholder(str)  # local files / cache; None: the default
    # None: "train+validation" where there is a validation split (binarized_mnist: the
    # paper's 60,000 training images; an .npz with "validation"), else "train".
    config.data.train_split = config_dict.placeholder(str)
    # dynamic | fixed | threshold | none (grey levels, for model.likelihood="gaussian").
    # None: the data module's defaults (dynamic for training splits, fixed otherwise).
    config.data.train_binarization = config_dict.placeholder(str)
    config.data.eval_binarization = config_dict.placeholder(str)

    config.model = ml_collections.ConfigDict()
    config.model.latent_dim = 20
    config.model.hidden_units = (200, 200)
    config.model.activation = "tanh"
    config.model.scale_activation = "exp"  # the encoder outputs a log-variance
    config.model.covariance = "unweighted"  # REM moment matching: Eq. 23 (or "weighted", Eq. 22)
    config.model.ridge = 1e-6
    # Decoder output bias = logit of the training pixel means, clipped to
    # [clip, 1 - clip] (Burda et al.); with the Gaussian likelihood the means. False: zeros.
    config.model.output_bias_from_data = True
    config.model.output_bias_clip = 1e-3
    # mlp: the paper's MLPs (hidden_units) | conv: rem_tf.networks.conv_encoder / conv_decoder.
    config.model.architecture = "mlp"
    # bernoulli (binary data) | gaussian (learned scalar scale; the data's grey levels:
    # data.*_binarization default to "none").
    config.model.likelihood = "bernoulli"
    # Method parameters, passed only to the methods whose class takes them:
    config.model.num_groups = 8  # M, the number of groups of K particles (MIWAE, PIWAE)
    config.model.beta = 0.5  # β in [0, 1]: CIWAE's β·ELBO + (1 − β)·IWAE

    config.training = ml_collections.ConfigDict()
    config.training.epochs = 200
    # Global batch: split evenly over the replicas of the strategy (must divide).
    config.training.batch_size = 20
    config.training.num_particles = 1000
    config.training.optimizer = "adam"  # adam | sgd (same for the decoder and the encoder)
    config.training.learning_rate = 1e-3
    config.training.schedule = "burda"  # burda | constant
    config.training.adam_beta_1 = 0.9
    config.training.adam_beta_2 = 0.999
    config.training.adam_epsilon = 1e-4  # Burda et al.
    config.training.steps_per_execution = 1  # must divide the steps per epoch
    config.training.jit_compile = False
    config.training.checkpoint_every_steps = 1000  # and at the end of every epoch
    # > 0: also keep a copy of every checkpoint whose step is a multiple of this in
    # <workdir>/kept_checkpoints/, with its training time in times.csv (learning curves).
    config.training.keep_checkpoint_every_steps = 0

    config.evaluation = ml_collections.ConfigDict()
    config.evaluation.split = "test"
    # Proposal of the importance-sampled log-likelihood: encoder (r(z|x)) | shifted.
    config.evaluation.proposal = "encoder"
    config.evaluation.num_samples = 5000  # K of the importance-sampled log-likelihood
    config.evaluation.chunk_size = 200  # particles per chunk: memory ~ batch × chunk × 784 floats
    config.evaluation.batch_size = 100
    config.evaluation.elbo_samples = 1000  # particles of the ELBO estimate
    config.evaluation.active_units_threshold = 0.01
    config.evaluation.num_examples = config_dict.placeholder(int)  # None: the whole split

    config.distribute = ml_collections.ConfigDict()
    config.distribute.strategy = "default"  # default | mirrored | multi_worker
    # mirrored without GPUs: split the CPU into this many logical devices (0: don't).
    config.distribute.num_cpu_devices = 0
    return config


def get_config():
    """`default_config()`: this file is the --config of `rem-tf` / run.py when none is given."""
    return default_config()
