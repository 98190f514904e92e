"""The Burda et al. learning-rate schedule, at and around every stage boundary."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rem_tf import schedules

STEPS_PER_EPOCH = 7  # not a power of 3, so epoch and step boundaries differ


def burda_by_hand(step, lr=1e-3, steps_per_epoch=STEPS_PER_EPOCH):
    """Stage i covers epochs [Σ_{j<i} 3^j, Σ_{j<=i} 3^j), i = 0..7, at lr·10^(−i/7).

    After the last stage the rate stays.
    """
    epoch = step // steps_per_epoch
    start = 0
    for i in range(8):
        if epoch < start + 3**i:
            return lr * 10 ** (-i / 7)
        start += 3**i
    return lr * 10 ** (-7 / 7)


def test_stage_boundaries_are_sums_of_powers_of_three():
    assert schedules.burda_stage_boundaries() == [1, 4, 13, 40, 121, 364, 1093]
    assert sum(3**i for i in range(8)) == 3280


@pytest.mark.parametrize("epoch", [1, 4, 13, 40, 121, 364, 1093, 3280])
def test_values_at_and_just_before_every_boundary(epoch):
    schedule = schedules.BurdaSchedule(1e-3, STEPS_PER_EPOCH)
    first_step = epoch * STEPS_PER_EPOCH
    for step in (first_step - 1, first_step, first_step + 1):
        np.testing.assert_allclose(float(schedule(step)), burda_by_hand(step), rtol=1e-6)
    # the rate drops exactly at the first step of a new stage (but not at 3280: it holds)
    before, at = float(schedule(first_step - 1)), float(schedule(first_step))
    if epoch < 3280:
        np.testing.assert_allclose(at / before, 10 ** (-1 / 7), rtol=1e-6)
    else:
        assert at == before


def test_first_and_last_stage_values():
    schedule = schedules.BurdaSchedule(2e-3, 3)
    assert float(schedule(0)) == pytest.approx(2e-3)
    assert float(schedule(2)) == pytest.approx(2e-3)  # still epoch 0
    assert float(schedule(3)) == pytest.approx(2e-3 * 10 ** (-1 / 7))
    assert float(schedule(10**7)) == pytest.approx(2e-4)  # long after 3280 epochs: held
    assert schedules.burda_learning_rate(1e-3, 3279) == pytest.approx(1e-4)
    assert schedules.burda_learning_rate(1e-3, 0.5) == pytest.approx(1e-3)


def test_works_on_int64_tensors_and_in_graph():
    schedule = schedules.BurdaSchedule(1e-3, STEPS_PER_EPOCH)
    steps = tf.constant([0, 6, 7, 27, 28, 91], tf.int64)
    rates = tf.function(lambda s: tf.map_fn(schedule, s, fn_output_signature=tf.float32))(steps)
    np.testing.assert_allclose(rates, [burda_by_hand(int(s)) for s in steps], rtol=1e-6)


def test_serializes_and_drives_an_optimizer():
    schedule = schedules.BurdaSchedule(1e-3, STEPS_PER_EPOCH)
    restored = schedules.BurdaSchedule.from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()
    optimizer = keras.optimizers.Adam(schedule)
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert revived.get_config()["learning_rate"]["class_name"] == "BurdaSchedule"
    variable = keras.Variable(np.zeros(2, np.float32))
    for _ in range(STEPS_PER_EPOCH):  # epoch 0
        optimizer.apply([tf.ones(2)], [variable])
    assert float(optimizer.learning_rate) == pytest.approx(1e-3 * 10 ** (-1 / 7))


def test_make_schedule_and_bad_arguments():
    assert schedules.make_schedule("constant", 0.5, 10) == 0.5
    assert isinstance(schedules.make_schedule("burda", 1e-3, 10), schedules.BurdaSchedule)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.make_schedule("cosine", 1e-3, 10)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        schedules.BurdaSchedule(1e-3, 0)
