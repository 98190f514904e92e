"""Objects from a config: the strategy, the model, its optimizers, and each epoch's data.

Every function reads a checked config (see `rem_tf.experiment.config.check_config`);
the fields each reads are listed in its docstring.
"""

import inspect
import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import rem_tf
from rem_tf import data, networks, schedules
from rem_tf.experiment.errors import ConfigError

IMAGE_SHAPE = (28, 28, 1)  # the paper's data sets (others: `input_shape`)
# Method parameters passed only to the method classes whose __init__ takes them.
METHOD_FIELDS = ("num_groups", "beta")  # MIWAE / PIWAE, CIWAE
# The values of model.architecture / model.likelihood this module builds; to add one,
# extend these and pass it on in `build_model_from_config` (the one place).
SUPPORTED = {"architecture": ("mlp", "conv"), "likelihood": ("bernoulli", "gaussian")}


def make_strategy(config):
    """The tf.distribute strategy of `distribute.strategy` (and `distribute.num_cpu_devices`)."""
    name = config.distribute.strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        count = config.distribute.num_cpu_devices
        if gpus or count <= 1:
            return tf.distribute.MirroredStrategy()
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError as err:  # TensorFlow was initialized before
            raise ConfigError(
                f"cannot split the CPU into {count} devices (distribute.num_cpu_devices): {err}"
            ) from None
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(count)])
    # multi_worker: the cluster comes from TF_CONFIG.
    if "TF_CONFIG" in os.environ:
        try:
            spec = json.loads(os.environ["TF_CONFIG"])
            valid = isinstance(spec.get("cluster"), dict) and {"type", "index"} <= set(spec["task"])
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid:
            raise ConfigError(
                f"TF_CONFIG is not valid: {os.environ['TF_CONFIG']!r}; expected JSON like "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}'
            )
    else:
        logging.warning("--strategy=multi_worker without TF_CONFIG: one local worker.")
    return tf.distribute.MultiWorkerMirroredStrategy()  # rem_tf's fit patches a Keras bug


def output_bias(config):
    """The decoder's initial output bias from the training pixel means, or None; float32 [D].

    Bernoulli: the logit of the clipped means (Burda et al.); Gaussian: the means.

    Reads `model.output_bias_from_data`, `model.output_bias_clip`, `data.*`.
    """
    if not config.model.output_bias_from_data:
        return None
    images = data.load_array(
        config.data.name, config.data.train_split, source=config.data.source,
        data_dir=config.data.data_dir, path=config.data.path,
    )  # [N, *image_shape] intensities in [0, 1]: the mean of a dynamic binarization
    if config.data.train_binarization == "threshold":
        images = (images > 0.5).astype(np.float32)
    mean = images.reshape(len(images), -1).mean(0, dtype=np.float64)
    if config.model.likelihood == "gaussian":
        return mean.astype(np.float32)
    clip = config.model.output_bias_clip
    mean = np.clip(mean, clip, 1 - clip)
    return np.log(mean / (1 - mean)).astype(np.float32)


def model_options(config):
    """The `METHOD_FIELDS` of `model` that the method's class takes, as keyword arguments.

    Raises:
      ConfigError: model.architecture or model.likelihood is not `SUPPORTED`.
    """
    for field, valid in SUPPORTED.items():
        if config.model[field] not in valid:
            raise ConfigError(
                f"model.{field} {config.model[field]!r} is not supported by rem_tf.experiment; "
                f"valid: {', '.join(valid)}"
            )
    taken = inspect.signature(rem_tf.METHODS[config.method]).parameters
    return {field: config.model[field] for field in METHOD_FIELDS if field in taken}


def build_model_from_config(config, *, decoder_output_bias=None, input_shape=IMAGE_SHAPE):
    """The model of `method` (uncompiled), built in the current strategy scope.

    Reads `method`, `seed`, `model.*` and `training.num_particles`;
    `model.num_groups` / `model.beta` only for the methods that take them.
    `model.architecture` "mlp": the paper's MLPs (`model.hidden_units`); "conv":
    `rem_tf.networks.conv_encoder` / `conv_decoder` with their default filters. Both
    use `model.activation`.

    Args:
      config: a checked config.
      decoder_output_bias: optional initial decoder output bias [D] (`output_bias`).
      input_shape: shape of one image.
    """
    model = config.model
    if model.architecture == "conv":
        parts = {
            "encoder": networks.conv_encoder(model.latent_dim, input_shape,
                                             activation=model.activation,
                                             scale_activation=model.scale_activation),
            # Always a per-pixel output bias (zeros without one from the data), so that
            # every model of this config has the same variables as its checkpoints.
            "decoder": networks.conv_decoder(
                model.latent_dim, input_shape, activation=model.activation,
                output_bias=(np.zeros(int(np.prod(input_shape)), np.float32)
                             if decoder_output_bias is None else decoder_output_bias)),
        }
    else:
        parts = {"hidden_units": tuple(model.hidden_units), "activation": model.activation,
                 "scale_activation": model.scale_activation,
                 "decoder_output_bias": decoder_output_bias}
    try:
        return rem_tf.build_model(
            config.method,
            likelihood=model.likelihood,
            latent_dim=model.latent_dim,
            num_particles=config.training.num_particles,
            input_shape=tuple(input_shape),
            covariance=model.covariance,
            seed=config.seed,
            ridge=model.ridge,
            **parts,
            **model_options(config),
        )
    except ValueError as err:
        raise ConfigError(f"cannot build the {config.method} model: {err}") from None


def make_optimizer(config, steps_per_epoch):
    """One optimizer (`training.optimizer`, Adam or SGD) with the `training.schedule` rate."""
    rate = schedules.make_schedule(
        config.training.schedule, config.training.learning_rate, steps_per_epoch
    )
    if config.training.optimizer == "sgd":
        return keras.optimizers.SGD(rate)
    return keras.optimizers.Adam(
        rate,
        beta_1=config.training.adam_beta_1,
        beta_2=config.training.adam_beta_2,
        epsilon=config.training.adam_epsilon,
    )


def compile_model(model, config, steps_per_epoch):
    """Compiles with two optimizers (decoder θ, encoder η) of the same kind and schedule.

    Reads `training.optimizer`, `learning_rate`, `schedule`, `adam_*`,
    `steps_per_execution` and `jit_compile`.
    """
    model.compile(
        model_optimizer=make_optimizer(config, steps_per_epoch),
        proposal_optimizer=make_optimizer(config, steps_per_epoch),
        steps_per_execution=config.training.steps_per_execution,
        jit_compile=config.training.jit_compile,
    )


def epoch_seed(seed, epoch):
    """The data seed of one epoch: a function of (seed, epoch) only, in [0, 2**31)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] >> 1)


def epoch_plan(start_step, steps_per_epoch, epochs):
    """[(epoch, first batch)] of the epochs left after optimizer step `start_step`.

    A restart in the middle of epoch e finishes it from the batch where it
    stopped, then runs whole epochs; one `fit` call per epoch.
    """
    epoch, offset = divmod(int(start_step), int(steps_per_epoch))
    return [(e, offset if e == epoch else 0) for e in range(epoch, int(epochs))]


def train_dataset(config, batch_size, epoch=0, offset=0):
    """The shuffled, binarized batches of one epoch, from batch `offset` on.

    Each epoch is a fresh pipeline seeded by `epoch_seed(seed, epoch)`, so its
    batches depend on (seed, epoch) alone — not on how many epochs, restarts or
    iterators came before (Keras peeks at one batch of a fresh iterator under a
    distribution strategy): a run resumed at (epoch, offset) sees exactly the
    batches an uninterrupted run sees there. Reads `seed` and `data.*`.

    Returns:
      (dataset of float32 [batch_size, *image_shape], batches in a whole epoch).
    """
    dataset = data.load(
        config.data.name, config.data.train_split, source=config.data.source,
        binarization=config.data.train_binarization, data_dir=config.data.data_dir,
        path=config.data.path, batch_size=batch_size, shuffle=True,
        seed=epoch_seed(config.seed, epoch), drop_remainder=True,
    )
    steps_per_epoch = int(dataset.cardinality())
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.skip(offset).with_options(options), steps_per_epoch


def input_shape(config):
    """The shape of one training image of `data.*`: the model's input_shape."""
    dataset, _ = train_dataset(config, 1)
    return tuple(int(d) for d in dataset.element_spec.shape[1:])


def data_label(config):
    """What `data.*` names, for messages and the default workdir: the .npz path or data.name."""
    return str(config.data.path) if config.data.get("path") is not None else config.data.name


def eval_images(config):
    """The `evaluation.split` of `data.*` as float32 [N, *image_shape] binary images.

    The first `evaluation.num_examples` images (None: all), in file order.
    """
    dataset = data.load(
        config.data.name, config.evaluation.split, source=config.data.source,
        binarization=config.data.eval_binarization, data_dir=config.data.data_dir,
        path=config.data.path, batch_size=1000, shuffle=False,
    )
    images = np.concatenate(list(dataset.as_numpy_iterator()))
    if config.evaluation.num_examples is not None:
        images = images[: config.evaluation.num_examples]
    return images
