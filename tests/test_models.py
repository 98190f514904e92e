"""Oracle and behaviour tests of the Keras models of every method."""

import keras
import numpy as np
import pytest
import scipy.special
import tensorflow as tf

import rem_tf

CORE_METHODS = ["vae", "iwae", "rem_v1", "rem_v2"]
SMALL = dict(latent_dim=2, hidden_units=(16,), input_shape=(16,))


def small_model(method, num_particles=10, seed=1, **kwargs):
    return rem_tf.build_model(method, num_particles=num_particles, seed=seed, **{**SMALL, **kwargs})


def copy_weights(source, target):
    target.encoder.set_weights(source.encoder.get_weights())
    target.decoder.set_weights(source.decoder.get_weights())


def gradients(model, x, loss_name, variables):
    with tf.GradientTape() as tape:
        losses = model.compute_losses(tf.constant(x))
        loss = tf.reduce_mean(getattr(losses, loss_name))
    return tape.gradient(loss, variables)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="rem_v1"):
        rem_tf.build_model("rem_v3")


@pytest.mark.parametrize("method", ["rem_v1", "rem_v2"])
def test_rem_needs_two_particles(method):
    with pytest.raises(ValueError, match="num_particles >= 2"):
        small_model(method, num_particles=1)


def test_iwae_decoder_gradient_equals_rem_v1_decoder_gradient(binary_data):
    # Same seed -> the same particles z_k; Eq. 9: both are Σ_k α_k ∇θ log p(x, z_k).
    x = binary_data[0][:20]
    iwae, rem = small_model("iwae", num_particles=50), small_model("rem_v1", num_particles=50)
    copy_weights(iwae, rem)
    g_iwae = gradients(iwae, x, "model_loss", iwae.decoder.trainable_variables)
    g_rem = gradients(rem, x, "model_loss", rem.decoder.trainable_variables)
    for a, b in zip(g_iwae, g_rem):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in g_iwae) > 1e-3  # not trivially zero


@pytest.mark.parametrize("method", ["rem_v1", "rem_v2"])
def test_rem_losses_touch_only_their_own_network(method, binary_data):
    model = small_model(method)
    x = binary_data[0][:20]
    for loss_name, other in [("model_loss", model.encoder), ("proposal_loss", model.decoder)]:
        for g in gradients(model, x, loss_name, other.trainable_variables):
            assert g is None or not np.any(g.numpy()), f"{loss_name} leaks into {other.name}"


@pytest.mark.parametrize("method", sorted(rem_tf.METHODS))
@pytest.mark.parametrize("frozen", ["model", "proposal"])
def test_a_zero_learning_rate_leaves_its_network_bit_identical(method, frozen, binary_data):
    model = small_model(method)
    rates = {"model": 1e-2, "proposal": 1e-2, frozen: 0.0}
    model.compile(model_optimizer=keras.optimizers.Adam(rates["model"]),
                  proposal_optimizer=keras.optimizers.Adam(rates["proposal"]))
    frozen_net, moving_net = ((model.decoder, model.encoder) if frozen == "model"
                              else (model.encoder, model.decoder))
    before_frozen, before_moving = frozen_net.get_weights(), moving_net.get_weights()
    model.fit(binary_data[0][:40], batch_size=20, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(before_frozen, frozen_net.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(a != b) for a, b in zip(before_moving, moving_net.get_weights()))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_log_likelihood_matches_quadrature_for_a_one_dimensional_latent(jit_compile):
    keras.utils.set_random_seed(0)
    model = rem_tf.build_model("iwae", latent_dim=1, hidden_units=(8,), input_shape=(6,), seed=3)
    # Proposal N(0, 1.5²) for every x: wider than the posterior, so the weights are bounded.
    encoder = model.encoder
    encoder.loc_layer.set_weights([np.zeros((8, 1)), np.zeros(1)])
    encoder.scale_layer.set_weights([np.zeros((8, 1)), np.full(1, 2 * np.log(1.5))])
    rng = np.random.default_rng(0)
    x = (rng.random((5, 6)) < 0.5).astype(np.float32)
    # log p(x) = log ∫ N(z; 0, 1) Π_d Bern(x_d | decoder(z)) dz on a fine grid.
    grid = np.linspace(-12, 12, 24001, dtype=np.float32)
    logits = model.decode(grid[:, None]).numpy().astype(np.float64)  # [G, 6]
    log_lik = (x[None] * logits[:, None] - np.logaddexp(0, logits[:, None])).sum(-1)  # [G, 5]
    log_integrand = log_lik + scipy.stats.norm.logpdf(grid.astype(np.float64))[:, None]
    exact = scipy.special.logsumexp(log_integrand, axis=0) + np.log(grid[1] - grid[0])
    estimate = model.log_likelihood(x, num_samples=20000, chunk_size=3000, batch_size=2,
                                    jit_compile=jit_compile)
    assert estimate.shape == (5,)
    np.testing.assert_allclose(estimate, exact, atol=0.02)  # ~3 Monte Carlo standard errors


def test_no_nan_with_5000_particles(binary_data):
    for method in CORE_METHODS:
        model = small_model(method, num_particles=5000)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(binary_data[0][:40], batch_size=20, epochs=1, verbose=0)
        assert all(np.isfinite(v[-1]) for v in history.history.values()), (method, history.history)
    assert np.all(np.isfinite(model.log_likelihood(binary_data[1][:10], num_samples=5000)))


# The methods' own settings for the fit; the others take K = 10.
FIT_SETTINGS = {"miwae": dict(num_particles=5, num_groups=2),
                "piwae": dict(num_particles=5, num_groups=2),
                "ciwae": dict(num_particles=10, beta=0.5)}


@pytest.mark.parametrize("method", sorted(rem_tf.METHODS))
def test_short_fit_improves_held_out_log_likelihood(method, binary_data):
    train, test = binary_data
    model = small_model(method, **{"num_particles": 10, **FIT_SETTINGS.get(method, {})},
                        latent_dim=4, hidden_units=(32,))
    if model.shared_loss:
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
    else:  # a θ loss and an η loss (REM, RWS, PIWAE, STL, DReG): one optimizer each
        model.compile(model_optimizer=keras.optimizers.Adam(3e-3),
                      proposal_optimizer=keras.optimizers.Adam(3e-3))
    before = model.log_likelihood(test, num_samples=200).mean()
    history = model.fit(train, batch_size=20, epochs=8, verbose=0)
    after = model.log_likelihood(test, num_samples=200).mean()
    assert after > before + 2.0, (before, after)
    expected = {"loss", "elbo", "log_likelihood", "kl_to_prior"}
    if not model.shared_loss:
        expected |= {"model_loss", "proposal_loss"}
    assert expected <= set(history.history)
    assert all(np.isfinite(v[-1]) for v in history.history.values()), history.history
    result = model.evaluate(test, batch_size=50, verbose=0, return_dict=True)
    assert expected <= set(result) and result["log_likelihood"] >= result["elbo"], result


def test_evaluate_log_likelihood_is_an_upper_bound_on_elbo(binary_data):
    model = small_model("iwae", num_particles=100)
    model.compile(optimizer="adam")
    result = model.evaluate(binary_data[1], batch_size=50, verbose=0, return_dict=True)
    assert result["log_likelihood"] >= result["elbo"]
    assert result["kl_to_prior"] >= 0


def test_encode_decode_sample_shapes():
    model = rem_tf.build_model("rem_v2", latent_dim=3, hidden_units=(8,), num_particles=4)
    x = np.zeros((2, 28, 28, 1), np.float32)
    loc, scale = model.encode(x)
    assert loc.shape == (2, 3) and scale.shape == (2, 3) and np.all(scale.numpy() > 0)
    assert model.decode(tf.zeros([5, 3])).shape == (5, 28, 28, 1)  # the likelihood's parameters
    samples = model.sample(6).numpy()
    assert samples.shape == (6, 28, 28, 1) and set(np.unique(samples)) <= {0.0, 1.0}


def test_bad_inputs_are_clear_value_errors(binary_data):
    model = small_model("iwae")
    model.compile(optimizer="adam")
    train = binary_data[0]
    with pytest.raises(ValueError, match=r"shape \(16,\).*array of shape \(10, 15\)"):
        model.fit(np.zeros((10, 15), np.float32), verbose=0)
    with pytest.raises(ValueError, match="unbatched"):
        model.fit(tf.data.Dataset.from_tensor_slices(train), verbose=0)
    for ridge in (0.0, float("inf"), float("nan"), "a", True):
        with pytest.raises(ValueError, match="ridge must be a finite number > 0"):
            rem_tf.build_model("rem_v1", ridge=ridge, **SMALL)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        with pytest.raises(ValueError, match="float32"):
            rem_tf.build_model("iwae", **SMALL)
    finally:
        keras.config.set_dtype_policy("float32")
    with pytest.raises(ValueError, match="binary"):
        model.fit(train * 0.5, verbose=0)
    nan = train.copy()
    nan[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(nan, verbose=0)
    with pytest.raises(ValueError, match="binary"):
        model.fit(tf.data.Dataset.from_tensor_slices(train * 0.5).batch(10), verbose=0)
    with pytest.raises(ValueError, match="binary"):
        model.log_likelihood(train[:2] + 0.5)
    with pytest.raises(ValueError, match="num_samples must be an integer"):
        model.log_likelihood(train[:2], num_samples=2.7)


def test_compile_forms():
    model = small_model("rem_v1")
    with pytest.raises(ValueError, match="together"):
        model.compile(model_optimizer="adam")
    with pytest.raises(ValueError, match="not both"):
        model.compile(optimizer="adam", model_optimizer="adam", proposal_optimizer="adam")
    model.compile(optimizer="adam")  # one optimizer for both parameter sets is allowed
    assert model.proposal_optimizer is None


def test_training_continued_from_a_keras_file_equals_continued_training_bit_for_bit(
        binary_data, tmp_path):
    # The .keras file keeps the particle-seed state: the reloaded model does not replay
    # the particle noise of the first epoch.
    train = binary_data[0][:40]
    model = small_model("rem_v1")
    model.compile(model_optimizer=keras.optimizers.Adam(1e-2),
                  proposal_optimizer=keras.optimizers.Adam(3e-3))
    model.fit(train, batch_size=20, epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(restored.seed_generator.state.numpy(),
                                  model.seed_generator.state.numpy())
    # Two steps, each drawing twice: the particles of r and those of the hyperproposal.
    assert restored.seed_generator.state.numpy()[1] == 4
    for m in (model, restored):
        m.fit(train, batch_size=20, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights() + [v.numpy() for v in model.optimizer.variables],
                    restored.get_weights() + [v.numpy() for v in restored.optimizer.variables]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.proposal_optimizer.variables, restored.proposal_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ------------------------------------------------- Keras callbacks with two optimizers


def two_optimizer_model(proposal_rate=5e-4):
    model = small_model("rem_v1", num_particles=4)
    model.compile(model_optimizer=keras.optimizers.Adam(1e-3),
                  proposal_optimizer=keras.optimizers.Adam(proposal_rate))
    return model


def test_reduce_lr_on_plateau_moves_both_learning_rates_and_logs_both(binary_data):
    model = two_optimizer_model()
    # min_delta larger than any change: every epoch after the first is a plateau.
    reduce = keras.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=1e9)
    history = model.fit(binary_data[0][:40], batch_size=20, epochs=3, verbose=0,
                        callbacks=[reduce])
    # Keras halves θ's rate at the end of epochs 2 and 3; η keeps its ratio to θ (1/2).
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3 / 4)
    assert float(model.proposal_optimizer.learning_rate) == pytest.approx(5e-4 / 4)
    np.testing.assert_allclose(history.history["learning_rate"], [1e-3, 1e-3, 5e-4], rtol=1e-6)
    np.testing.assert_allclose(history.history["proposal_learning_rate"], [5e-4, 5e-4, 2.5e-4],
                               rtol=1e-6)


def test_learning_rate_scheduler_moves_both_rates_unless_eta_has_its_own_schedule(binary_data):
    halve = keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate * 0.5)
    model = two_optimizer_model(proposal_rate=1e-3)
    model.fit(binary_data[0][:40], batch_size=20, epochs=2, verbose=0, callbacks=[halve])
    assert float(model.optimizer.learning_rate) == pytest.approx(2.5e-4)
    assert float(model.proposal_optimizer.learning_rate) == float(model.optimizer.learning_rate)
    # η with a LearningRateSchedule of its own keeps it (the documented way to schedule each).
    model = small_model("rem_v1", num_particles=4)
    own = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=1, decay_rate=0.9)
    model.compile(model_optimizer=keras.optimizers.Adam(1e-3),
                  proposal_optimizer=keras.optimizers.Adam(own))
    model.fit(binary_data[0][:40], batch_size=20, epochs=2, verbose=0, callbacks=[halve])
    assert float(model.optimizer.learning_rate) == pytest.approx(2.5e-4)
    assert float(model.proposal_optimizer.learning_rate) == pytest.approx(1e-3 * 0.9**4)


def test_keras_tensorboard_writes_both_learning_rates(binary_data, tmp_path):
    model = two_optimizer_model()
    model.fit(binary_data[0][:40], batch_size=20, epochs=2, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(str(tmp_path))])
    scalars = {}
    for file in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(file)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert {"epoch_loss", "epoch_log_likelihood"} <= set(scalars)
    np.testing.assert_allclose(scalars["epoch_learning_rate"], [1e-3, 1e-3], rtol=1e-6)
    np.testing.assert_allclose(scalars["epoch_proposal_learning_rate"], [5e-4, 5e-4], rtol=1e-6)


def test_log_likelihood_counts_particles_in_int64_beyond_2_31():
    # K = 2**31 − 1 cannot be run here; the particle counting `sampling.importance_pass` uses for
    # it is checked instead (in int32, i · C overflowed and the last chunks were masked
    # out): ⌈K / C⌉ chunks, all of chunk n − 2 kept, exactly the remaining ones of chunk
    # n − 1, and log K finite.
    base = rem_tf.models.sampling
    for num_samples, chunk in ((2**31 - 1, 200), (2**31 + 7, 200), (2**62 + 1, 4096)):
        k, c, n = base.chunk_counts(tf.constant(num_samples), chunk)
        assert int(n) == -(-num_samples // chunk)
        assert np.all(base.chunk_mask(k, c, n - 2).numpy())
        kept = int(np.sum(base.chunk_mask(k, c, n - 1).numpy()))
        assert kept == num_samples - (int(n) - 1) * chunk and 1 <= kept <= chunk
        assert not np.any(base.chunk_mask(k, c, n).numpy())
        log_k = float(tf.math.log(tf.cast(k, tf.float32)))
        assert abs(log_k - np.log(num_samples)) < 1e-6 * np.log(num_samples)
