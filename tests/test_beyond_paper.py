"""Oracle and statistical tests of the methods beyond the paper: RWS, IWAE-STL, IWAE-DReG.

Many-draw tests repeat one image N times in a batch: every copy gets its own
particles, so one `compute_losses` call gives N independent gradient draws.
All of an image's encoder dependence goes through its (loc, scale), so the
per-draw gradient w.r.t. the encoder parameters is Jᵀ g, with g the gradient
w.r.t. (loc, scale) of that copy and J the encoder's Jacobian at the image.
Means are compared in (loc, scale) space (J is linear, so equal means there
mean equal means for every parameter); variances are summed over parameters.
"""

import keras
import numpy as np
import pytest
import scipy.special
import tensorflow as tf

import rem_tf
from rem_tf import estimators
from rem_tf.models.rem_v1 import REMv1

NEW_METHODS = ["rws", "iwae_stl", "iwae_dreg"]
SMALL = dict(latent_dim=2, hidden_units=(16,), input_shape=(16,))
NUM_DRAWS = 4000
Z_MAX = 4.0  # largest |mean / standard error| accepted as "no bias"


def small_model(method, num_particles=10, seed=1, **kwargs):
    return rem_tf.build_model(method, num_particles=num_particles, seed=seed, **{**SMALL, **kwargs})


def copy_weights(source, target):
    target.encoder.set_weights(source.encoder.get_weights())
    target.decoder.set_weights(source.decoder.get_weights())


def twin(model, method, num_particles, seed=7):
    """A `method` model with `model`'s weights and particle seed `seed`."""
    other = small_model(method, num_particles=num_particles, seed=seed)
    copy_weights(model, other)
    return other


def gradients(model, x, loss_name, variables):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(getattr(model.compute_losses(tf.constant(x)), loss_name))
    return tape.gradient(loss, variables)


def encoder_output_gradients(model, x, loss_name, num_draws=NUM_DRAWS):
    """Per-draw gradients of one image's loss w.r.t. its (loc, scale): [N, 2L]."""
    batch = tf.constant(np.repeat(x[None], num_draws, axis=0))  # [N, D]
    with tf.GradientTape() as tape:
        losses = model.compute_losses(batch)
        total = tf.reduce_sum(getattr(losses, loss_name))  # copy n's loss only touches row n
    grad_loc, grad_scale = tape.gradient(total, [losses.loc, losses.scale])  # [N, L] each
    return tf.concat([grad_loc, grad_scale], axis=-1).numpy()


def encoder_jacobian(model, x):
    """d(loc, scale)/dη at one image: [2L, P], P = number of encoder parameters."""
    with tf.GradientTape() as tape:
        loc, scale = model.encoder(tf.constant(x[None]))
        outputs = tf.concat([loc, scale], axis=-1)[0]  # [2L]
    jacobians = tape.jacobian(outputs, model.encoder.trainable_variables)
    return np.concatenate([j.numpy().reshape(outputs.shape[0], -1) for j in jacobians], axis=1)


def paired_z_scores(a, b):
    """|mean(a − b)| / standard error, per component, for paired draws [N, C]."""
    diff = a - b
    return np.abs(diff.mean(0)) / (diff.std(0, ddof=1) / np.sqrt(len(diff)))


def seeded_model(method="iwae", num_particles=10, init_seed=2019):
    keras.utils.set_random_seed(init_seed)  # reproducible network weights
    return small_model(method, num_particles=num_particles)


# ------------------------------------------------------------------ registry


@pytest.mark.parametrize(
    "method, class_name", [("rws", "RWS"), ("iwae_stl", "IWAESTL"), ("iwae_dreg", "IWAEDReG")]
)
def test_build_model_registers_and_serializes(method, class_name):
    model = rem_tf.build_model(method, num_particles=5, **SMALL)
    assert type(model).__name__ == class_name and rem_tf.METHODS[method] is type(model)
    assert keras.saving.get_registered_name(type(model)) == f"rem_tf>{class_name}"
    model.compile(optimizer="adam")  # base.get_compile_config needs a compiled model
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert type(restored) is type(model) and restored.num_particles == 5
    assert type(model).__doc__ and "References" in type(model).__doc__


def test_rws_needs_two_particles():
    with pytest.raises(ValueError, match="num_particles >= 2"):
        small_model("rws", num_particles=1)


# ------------------------------------------------------------ decoder: IWAE's


@pytest.mark.parametrize("method", NEW_METHODS)
def test_decoder_gradient_is_the_iwae_decoder_gradient(method, binary_data):
    # Same seed -> same particles; every method keeps Σ_k α_k ∇θ log p(x, z_k).
    x = binary_data[0][:20]
    iwae = small_model("iwae", num_particles=20)
    other = twin(iwae, method, 20, seed=1)
    g_iwae = gradients(iwae, x, "model_loss", iwae.decoder.trainable_variables)
    g_other = gradients(other, x, "model_loss", other.decoder.trainable_variables)
    for a, b in zip(g_iwae, g_other):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in g_iwae) > 1e-3


# ------------------------------------------------------------------- RWS


class REMv1WithEncoderAsHyperproposal(REMv1):
    """REM v1 with s := r_eta: the wake-φ update of RWS, per the paper's Eq. 14."""

    def hyperproposal_sample(self, x, z, alpha):
        # z are already samples of r; reuse them ("same samples"), and weight them
        # by β = p(x, z) / r(z|x), self-normalized.
        recognition = self.recognition(*self.encoder(x))
        log_joint = self.log_joint(x, z)  # [K, B]
        beta = estimators.normalized_weights(log_joint - recognition.log_prob(z))
        return z, log_joint, beta


def test_rws_encoder_gradient_equals_rem_v1_with_the_encoder_as_hyperproposal(binary_data):
    x = binary_data[0][:20]
    rws = small_model("rws", num_particles=30)
    rem = REMv1WithEncoderAsHyperproposal(num_particles=30, seed=1, **SMALL)
    copy_weights(rws, rem)
    g_rws = gradients(rws, x, "proposal_loss", rws.encoder.trainable_variables)
    g_rem = gradients(rem, x, "proposal_loss", rem.encoder.trainable_variables)
    for a, b in zip(g_rws, g_rem):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in g_rws) > 1e-3


def test_rws_encoder_gradient_matches_the_gaussian_score_by_hand(binary_data):
    # −(1/B) Σ_b Σ_k β_k ∇η log N(z_k; loc, scale²), z_k ~ r fixed, with the score of
    # a diagonal Gaussian in closed form: ∂/∂loc = (z − loc)/scale²,
    # ∂/∂scale = (z − loc)²/scale³ − 1/scale; then pulled back through the encoder.
    x = binary_data[0][:20]
    rws = small_model("rws", num_particles=30)
    g_rws = gradients(rws, x, "proposal_loss", rws.encoder.trainable_variables)
    sampler = twin(rws, "rws", 30, seed=1)  # same seed: the same z_k
    loc, scale, _, z, log_joint, _ = sampler.importance_sample(tf.constant(x), 30)
    # [B, L], [B, L], [K, B, L]
    loc, scale, z = (t.numpy().astype(np.float64) for t in (loc, scale, z))
    log_r = (-0.5 * ((z - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)).sum(-1)
    log_weights = log_joint.numpy().astype(np.float64) - log_r  # [K, B]
    beta = estimators.normalized_weights(log_weights).numpy()[..., None]  # [K, B, 1]
    batch = len(x)
    d_loc = -(beta * (z - loc) / scale**2).sum(0) / batch  # [B, L]
    d_scale = -(beta * ((z - loc) ** 2 / scale**3 - 1 / scale)).sum(0) / batch  # [B, L]
    with tf.GradientTape() as tape:
        loc_t, scale_t = rws.encoder(tf.constant(x))
    by_hand = tape.gradient(
        [loc_t, scale_t], rws.encoder.trainable_variables,
        output_gradients=[tf.constant(d_loc, tf.float32), tf.constant(d_scale, tf.float32)],
    )
    for a, b in zip(g_rws, by_hand):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_rws_losses_touch_only_their_own_network(binary_data):
    model = small_model("rws")
    x = binary_data[0][:20]
    for loss_name, other in [("model_loss", model.encoder), ("proposal_loss", model.decoder)]:
        for g in gradients(model, x, loss_name, other.trainable_variables):
            assert g is None or not np.any(g.numpy()), f"{loss_name} leaks into {other.name}"


# ------------------------------------------------------------------- DReG


def test_dreg_encoder_gradient_equals_its_analytic_form(binary_data):
    # Tucker et al. (2019), Eq. 7: ∇η = Σ_k α_k² ∂log w_k/∂z_k · ∂z_k/∂η, z_k = loc + scale·ε_k.
    # Built here without the surrogate: ∂log w/∂z by autodiff of log p plus the
    # closed-form (z − loc)/scale² of −log r, then a hand-made VJP through z.
    x = binary_data[0][:16]
    K = 12
    dreg = small_model("iwae_dreg", num_particles=K)
    g_dreg = gradients(dreg, x, "proposal_loss", dreg.encoder.trainable_variables)
    sampler = twin(dreg, "iwae_dreg", K, seed=1)  # same seed: the same ε_k
    loc, scale, _, z, _, _ = sampler.importance_sample(tf.constant(x), K, reparameterize=True)
    z = tf.constant(z.numpy())  # [K, B, L], fixed
    with tf.GradientTape() as tape:
        tape.watch(z)
        log_joint = sampler.log_joint(tf.constant(x), z)  # [K, B]
    d_log_joint = tape.gradient(log_joint, z).numpy()  # [K, B, L]; log p_k depends on z_k only
    loc, scale, z, log_joint, d_log_joint = (
        np.asarray(t, np.float64) for t in (loc, scale, z, log_joint, d_log_joint))
    eps = (z - loc) / scale  # [K, B, L]
    d_log_w = d_log_joint + (z - loc) / scale**2  # ∂(log p − log r)/∂z, params fixed
    log_r = (-0.5 * eps**2 - np.log(scale) - 0.5 * np.log(2 * np.pi)).sum(-1)  # [K, B]
    alpha = scipy.special.softmax(log_joint - log_r, axis=0)[..., None]  # [K, B, 1]
    d_z = -(alpha**2) * d_log_w / len(x)  # d(mean loss)/dz_k, [K, B, L]
    d_loc, d_scale = d_z.sum(0), (d_z * eps).sum(0)  # [B, L]: z = loc + scale·ε
    with tf.GradientTape() as tape:
        loc_t, scale_t = dreg.encoder(tf.constant(x))
    analytic = tape.gradient(
        [loc_t, scale_t], dreg.encoder.trainable_variables,
        output_gradients=[tf.constant(d_loc, tf.float32), tf.constant(d_scale, tf.float32)],
    )
    for a, b in zip(g_dreg, analytic):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in g_dreg) > 1e-3


@pytest.mark.parametrize("num_particles", [1, 10])
def test_dreg_encoder_gradient_is_unbiased_for_the_iwae_one(num_particles, binary_data):
    iwae = seeded_model("iwae", num_particles)
    dreg = twin(iwae, "iwae_dreg", num_particles)
    iwae = twin(iwae, "iwae", num_particles)  # same particle seed: paired draws
    x = binary_data[0][0]
    g_iwae = encoder_output_gradients(iwae, x, "model_loss")  # [N, 2L]
    g_dreg = encoder_output_gradients(dreg, x, "proposal_loss")
    assert np.all(paired_z_scores(g_dreg, g_iwae) < Z_MAX), paired_z_scores(g_dreg, g_iwae)
    # Not vacuous: the two estimators do differ draw by draw.
    assert np.all((g_dreg - g_iwae).std(0) > 0.1 * g_iwae.std(0))


def test_dreg_encoder_gradient_has_lower_variance_than_iwae(binary_data):
    # On a briefly trained model, the regime of training: measured ratio 0.011 at
    # K = 10. Not at every initialization: untrained, with the encoder far from the
    # posterior, the ratio ranged from 0.002 to 3.5 over 16 inits at K = 10
    # (3.5 for this test's init), since the path terms of log w no longer cancel.
    train = binary_data[0]
    trained = seeded_model("iwae", num_particles=10)
    trained.compile(optimizer=keras.optimizers.Adam(3e-3))
    trained.fit(train, batch_size=20, epochs=3, verbose=0)
    x = train[0]
    jacobian = encoder_jacobian(trained, x)  # [2L, P]
    g_iwae = encoder_output_gradients(twin(trained, "iwae", 10), x, "model_loss") @ jacobian
    g_dreg = encoder_output_gradients(twin(trained, "iwae_dreg", 10), x, "proposal_loss") @ jacobian
    ratio = g_dreg.var(0, ddof=1).sum() / g_iwae.var(0, ddof=1).sum()  # summed over P parameters
    # Bootstrap sd of this ratio over the N = 4000 draws: 0.0002; 0.5 leaves a wide margin.
    assert ratio < 0.5, ratio
    assert g_iwae.var(0).sum() > 0


# -------------------------------------------------------------------- STL


def test_stl_encoder_gradient_is_unbiased_for_one_particle(binary_data):
    # K = 1: STL is the ELBO's path-derivative estimator; the dropped score term
    # −∇η log r(z|x) has zero mean.
    iwae = seeded_model("iwae", num_particles=1)
    stl = twin(iwae, "iwae_stl", 1)
    iwae = twin(iwae, "iwae", 1)
    x = binary_data[0][0]
    g_iwae = encoder_output_gradients(iwae, x, "model_loss")
    g_stl = encoder_output_gradients(stl, x, "proposal_loss")
    assert np.all(paired_z_scores(g_stl, g_iwae) < Z_MAX), paired_z_scores(g_stl, g_iwae)
    assert np.all((g_stl - g_iwae).std(0) > 0.1 * g_iwae.std(0))


def test_stl_encoder_gradient_is_biased_for_many_particles(binary_data):
    # K > 1: the dropped term Σ_k α_k ∇η log r(z_k|x) no longer has zero mean
    # (Tucker et al., 2019). Documented, and measured here so the claim stays true.
    iwae = seeded_model("iwae", num_particles=10)
    stl = twin(iwae, "iwae_stl", 10)
    iwae = twin(iwae, "iwae", 10)
    x = binary_data[0][0]
    g_iwae = encoder_output_gradients(iwae, x, "model_loss")
    g_stl = encoder_output_gradients(stl, x, "proposal_loss")
    assert paired_z_scores(g_stl, g_iwae).max() > 10 * Z_MAX
    bias = np.linalg.norm(g_stl.mean(0) - g_iwae.mean(0)) / np.linalg.norm(g_iwae.mean(0))
    assert bias > 0.2, bias



# The short-fit and zero-learning-rate tests of these methods are test_models.py's,
# which run over every method.
