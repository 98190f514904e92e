"""Learning-rate schedules, as Keras `LearningRateSchedule`s over optimizer steps."""

import keras
import numpy as np
import tensorflow as tf

SCHEDULES = ("burda", "constant")


def burda_stage_boundaries(num_stages=8):
    """First epoch of each stage i = 1..num_stages-1: Σ_{j<i} 3^j = (3^i − 1) / 2.

    For the default 8 stages: [1, 4, 13, 40, 121, 364, 1093]; stage 7 ends at
    epoch 3280 = (3^8 − 1) / 2.
    """
    return [(3**i - 1) // 2 for i in range(1, int(num_stages))]


@keras.saving.register_keras_serializable(package="rem_tf")
class BurdaSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Burda et al. (2015): stage i = 0..num_stages−1 lasts 3^i epochs at lr·10^(−i/7).

    With the default 8 stages: epochs [0, 1) use lr, [1, 4) lr·10^(−1/7),
    [4, 13) lr·10^(−2/7), …, [1093, 3280) lr·10^(−1) — 3280 epochs in all.
    After the last stage the rate stays at its last value (Burda et al. stop
    training there; a longer run keeps lr·10^(−(num_stages−1)/7)).

    The schedule is a function of the optimizer step (its `iterations`, i.e. the
    number of updates already applied), and epoch = step // steps_per_epoch, so
    the update that starts epoch e is the first one at the new rate.

    Args:
      initial_learning_rate: lr of stage 0 (paper: 1e-3).
      steps_per_epoch: optimizer steps in one epoch (training examples // global batch).
      num_stages: number of stages (Burda et al.: 8).

    #### References

    Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders",
    §5 (training procedure); Dieng & Paisley (2019) §5.2 use it for both
    optimizers.
    """

    def __init__(self, initial_learning_rate, steps_per_epoch, num_stages=8, name="burda"):
        super().__init__()
        if int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if int(num_stages) < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.num_stages = int(num_stages)
        self.name = name
        # Stage i's rate, computed in float64 then rounded once.
        self._rates = [
            float(self.initial_learning_rate * 10.0 ** (-i / 7.0)) for i in range(self.num_stages)
        ]

    def stage(self, step):
        """Stage index (int64 tensor) of optimizer step `step`."""
        epoch = tf.cast(step, tf.int64) // self.steps_per_epoch
        boundaries = tf.constant(burda_stage_boundaries(self.num_stages), tf.int64)
        return tf.reduce_sum(tf.cast(epoch >= boundaries, tf.int64))

    def __call__(self, step):
        return tf.gather(tf.constant(self._rates, tf.float32), self.stage(step))

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "num_stages": self.num_stages,
            "name": self.name,
        }


def burda_learning_rate(initial_learning_rate, epoch, num_stages=8):
    """The rate of epoch `epoch` (a number), in numpy: for plots and tests."""
    stage = int(np.sum(np.asarray(epoch) >= np.asarray(burda_stage_boundaries(num_stages))))
    return initial_learning_rate * 10.0 ** (-stage / 7.0)


def make_schedule(name, learning_rate, steps_per_epoch):
    """A learning rate for `keras.optimizers.*(learning_rate=...)` by name.

    Args:
      name: "burda" (`BurdaSchedule`) or "constant" (the float itself).
      learning_rate: initial (burda) or constant learning rate.
      steps_per_epoch: optimizer steps per epoch.
    """
    if name == "burda":
        return BurdaSchedule(learning_rate, steps_per_epoch)
    if name == "constant":
        return float(learning_rate)
    raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")
