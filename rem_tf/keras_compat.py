"""A work-around for Keras 3 under MultiWorkerMirroredStrategy, applied by `GenerativeModel.fit`
and `evaluate` when the model's strategy is multi-worker (so plain `model.fit` users get it too).

Public, not package-private: `rem_tf.models.trainer` imports it, and docs/distributed.md tells
maintainers to raise `LAST_KERAS_WITH_BUG` when a Keras release fixes the bug."""

import re

import keras
import tensorflow as tf

# Keras versions known to reduce scalar metrics with axis=0 under MultiWorkerMirroredStrategy
# (tensorflow/tensorflow#72388). A later Keras is not patched: if the two-worker test
# (tests/test_distribute.py) fails on it with "Invalid reduction dimension 0", the bug is
# still there and this bound can be raised.
LAST_KERAS_WITH_BUG = (3, 15)


def needs_patch(version=keras.__version__):
    """True for the Keras 3 versions up to `LAST_KERAS_WITH_BUG` (e.g. "3.15.1")."""
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", version).groups())
    return (3, 0) <= (major, minor) <= LAST_KERAS_WITH_BUG


def patch_multi_worker_metric_reduction():
    """Works around Keras 3 reducing scalar metrics with axis=0 under MultiWorkerMirroredStrategy.

    `keras.src.backend.tensorflow.trainer.reduce_per_replica` calls
    `strategy.reduce("MEAN", v, axis=0)` on the (scalar) metric results, which
    fails with "Invalid reduction dimension 0 for input with 0 dimensions"
    (tensorflow/tensorflow#72388). Scalars are reduced with axis=None instead;
    everything else goes to the original function. Does nothing on a Keras
    that `needs_patch` says is not affected.
    """
    if not needs_patch():
        return
    from keras.src.backend.tensorflow import trainer  # noqa: PLC0415 - private, only if needed

    original = trainer.reduce_per_replica
    if getattr(original, "_rem_tf_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):

            def reduce(value):
                local = strategy.experimental_local_results(value)[0]
                if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return original(value, strategy, reduction)

            return tf.nest.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._rem_tf_patched = True
    trainer.reduce_per_replica = reduce_per_replica
