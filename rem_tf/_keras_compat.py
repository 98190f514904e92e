"""A work-around for Keras 3 under MultiWorkerMirroredStrategy, applied by `GenerativeModel.fit`
and `evaluate` when the model's strategy is multi-worker (so plain `model.fit` users get it too)."""

import tensorflow as tf


def patch_multi_worker_metric_reduction():
    """Works around Keras 3 reducing scalar metrics with axis=0 under MultiWorkerMirroredStrategy.

    `keras.src.backend.tensorflow.trainer.reduce_per_replica` calls
    `strategy.reduce("MEAN", v, axis=0)` on the (scalar) metric results, which
    fails with "Invalid reduction dimension 0 for input with 0 dimensions"
    (tensorflow/tensorflow#72388). Scalars are reduced with axis=None instead;
    everything else goes to the original function.
    """
    from keras.src.backend.tensorflow import trainer  # noqa: PLC0415

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
