"""The user's own networks and likelihoods: every method, any Keras encoder / decoder, any TFP
likelihood.

Oracles:
- probabilistic PCA (Tipping & Bishop, 1999) through the public API: closed-form
  log p(x), the exact posterior, and the closed-form maximum-likelihood value;
- with a convolutional decoder, the IWAE and REM v1 decoder gradients are equal for
  the same particles (paper Eq. 9), and REM's θ loss never reaches the encoder;
- a callable likelihood gives the built-in Gaussian's log p(x, z) exactly.
"""

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

import rem_tf
from rem_tf import estimators, export, likelihoods, networks

tfd = tfp.distributions

# ------------------------------------------------------------ probabilistic PCA

D, L = 10, 2  # data and latent dimension
SIGMA = 0.5


@pytest.fixture(scope="module")
def ppca():
    """x = W z + μ + ε, z ~ N(0, I_2), ε ~ N(0, σ² I_10): 2,000 points and the true parameters."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(D, L)) * np.array([2.0, 1.0])
    mu = rng.normal(size=D)
    z = rng.normal(size=(2000, L))
    x = (z @ w.T + mu + SIGMA * rng.normal(size=(2000, D))).astype(np.float32)
    return x, w, mu


def ppca_model(method, num_particles=20, likelihood="gaussian", **kwargs):
    """A linear encoder (two dense heads on the identity), a linear decoder, a learned Gaussian
    scale."""
    return rem_tf.build_model(
        method, encoder=networks.GaussianEncoder(keras.layers.Identity(), L),
        decoder=keras.layers.Dense(D), likelihood=likelihood, latent_dim=L, input_shape=(D,),
        num_particles=num_particles, seed=1, **kwargs)


def marginal_log_likelihood(w, mu, sigma, x):
    """Closed form log N(x; μ, W Wᵀ + σ² I), [N]."""
    return scipy.stats.multivariate_normal(mu, w @ w.T + sigma**2 * np.eye(D)).logpdf(x)


def exact_posterior(w, mu, sigma, x):
    """p(z | x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹), M = Wᵀ W + σ² I: means [N, L], covariance [L, L]."""
    m_inv = np.linalg.inv(w.T @ w + sigma**2 * np.eye(L))
    return (x - mu) @ (m_inv @ w.T).T, sigma**2 * m_inv


def max_log_likelihood(x):
    """The maximum over (W, μ, σ) of the average log-likelihood (Tipping & Bishop, 1999,
    Eq. 4, 7, 8).

    At the maximum μ is the sample mean, σ² the mean of the D − L smallest eigenvalues
    λ of the sample covariance S, and C = W Wᵀ + σ² I has tr(C⁻¹ S) = D, so
    ℓ_max = −½ [D log 2π + Σ_{i ≤ L} log λ_i + (D − L) log σ² + D].
    """
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x.T.astype(np.float64), bias=True)))[::-1]
    sigma2 = eigenvalues[L:].mean()
    return -0.5 * (D * np.log(2 * np.pi) + np.log(eigenvalues[:L]).sum() + (D - L) * np.log(sigma2)
                   + D)


def fitted_parameters(model):
    """(W [D, L], μ [D], σ) of a ppca_model."""
    kernel, bias = model.decoder.get_weights()
    return (kernel.T.astype(np.float64), bias.astype(np.float64),
            float(np.exp(model.likelihood.log_scale.numpy())))


def set_ppca(model, w, mu, x, loc_shift=0.0, scale_factor=1.0):
    """Decoder := (W, μ, σ); encoder := the posterior mean + loc_shift posterior sds, and
    scale_factor × the posterior sds (exactly representable: the posterior mean is linear in x)."""
    model.decoder.set_weights([w.T.astype(np.float32), mu.astype(np.float32)])
    model.likelihood.log_scale.assign(np.log(SIGMA))
    m_inv = np.linalg.inv(w.T @ w + SIGMA**2 * np.eye(L))
    gain = m_inv @ w.T  # [L, D]
    sd = np.sqrt(np.diag(SIGMA**2 * m_inv))  # [L]
    encoder = model.encoder
    encoder.loc_layer.set_weights([gain.T.astype(np.float32),
                                   (-gain @ mu + loc_shift * sd).astype(np.float32)])
    encoder.scale_layer.set_weights([np.zeros((D, L), np.float32),
                                     (2 * np.log(scale_factor * sd)).astype(np.float32)])


def test_ppca_log_likelihood_converges_to_the_closed_form_as_k_grows(ppca):
    x, w, mu = ppca
    x = x[:200]
    model = ppca_model("iwae")
    # A proposal off the posterior (shifted by 1 sd, 1.5× wider): the K = 1 estimate is biased.
    set_ppca(model, w, mu, x, loc_shift=1.0, scale_factor=1.5)
    exact = marginal_log_likelihood(w, mu, SIGMA, x)  # [200]
    gaps = {}
    for k in (1, 10, 100, 3000):
        estimate = model.log_likelihood(x, num_samples=k, chunk_size=1000, batch_size=200)
        gaps[k] = (np.mean(exact - estimate), np.std(exact - estimate) / np.sqrt(len(x)))
    # Jensen: E[log p̂_K] < log p(x), and the gap shrinks as K grows.
    means = [gaps[k][0] for k in (1, 10, 100, 3000)]
    assert means[0] > 0.3 and all(a > b for a, b in zip(means, means[1:])), gaps
    assert abs(means[-1]) < 3 * gaps[3000][1] + 2e-3, gaps


def test_ppca_moment_matched_hyperproposal_recovers_the_exact_posterior(ppca):
    x, w, mu = ppca
    x = x[:4]
    model = ppca_model("rem_v1", covariance="weighted")
    set_ppca(model, w, mu, x, loc_shift=0.5, scale_factor=1.5)
    _, _, _, z, _, log_weights = model.importance_sample(tf.constant(x), 20000)  # [K, 4, L]
    alpha = estimators.normalized_weights(log_weights)
    s = estimators.hyperproposal(z, alpha, model.covariance, model.ridge)  # REM's s(z) (Eq. 22)
    means, cov = exact_posterior(w, mu, SIGMA, x)
    sd = np.sqrt(np.diag(cov))
    # 20,000 particles with weights of bounded variance: Monte-Carlo errors of a few
    # thousandths of a posterior sd; 0.03 sd and 3% are ~10 standard errors.
    np.testing.assert_allclose(s.mean().numpy() / sd, means / sd, atol=0.03)
    for c in s.covariance().numpy():
        np.testing.assert_allclose(c, cov, atol=0.03 * sd.max() ** 2)


@pytest.mark.parametrize("method", ["iwae", "rem_v1"])
def test_ppca_training_reaches_the_maximum_likelihood(method, ppca):
    x, _, _ = ppca
    model = ppca_model(method, num_particles=50)
    steps, batch = 600, 500
    rate = keras.optimizers.schedules.CosineDecay(0.03, steps, alpha=0.01)
    model.compile(model_optimizer=keras.optimizers.Adam(rate),
                  proposal_optimizer=keras.optimizers.Adam(rate),
                  steps_per_execution=len(x) // batch)
    model.fit(x, batch_size=batch, epochs=steps * batch // len(x), verbose=0)
    best = max_log_likelihood(x)
    fitted = marginal_log_likelihood(*fitted_parameters(model), x)  # [N], exact
    # The maximum is a maximum: the fitted model's exact log-likelihood is never above it.
    assert fitted.mean() <= best + 1e-6
    # Tolerance: one standard error of the average log-likelihood over these N points,
    # std_n log p(x_n) / √N ≈ √(D/2) / √2000 ≈ 0.05 nats: the precision with which the data
    # determine the average log-likelihood at all (ML and the true parameters differ by
    # 0.007 here). Measured gaps after these 600 steps: iwae 0.034, rem_v1 0.035; at
    # initialization the gap is ~10 nats, after 100 steps ~0.9.
    tolerance = np.std(fitted) / np.sqrt(len(x))
    assert best - fitted.mean() < tolerance, (method, best, fitted.mean(), tolerance)
    # What the model reports, the importance-sampled log-likelihood, exceeds neither the
    # fitted model's exact value nor the maximum by more than Monte-Carlo noise.
    estimate = model.log_likelihood(x, num_samples=200, batch_size=500)  # [N]
    noise = np.std(estimate - fitted) / np.sqrt(len(x))
    assert estimate.mean() <= fitted.mean() + 3 * noise + 1e-4
    assert estimate.mean() <= best + 3 * noise + 1e-4


def test_callable_likelihood_gives_the_builtin_gaussian_log_joint(ppca):
    x, w, mu = ppca

    def normal(params):
        return tfd.Independent(tfd.Normal(params, SIGMA), reinterpreted_batch_ndims=1)

    builtin = ppca_model("iwae", likelihood=likelihoods.Gaussian(SIGMA, learned=False))
    custom = ppca_model("iwae", likelihood=normal)
    # The same networks (the fixed Gaussian keeps its σ as a non-trainable weight of its own).
    custom.encoder.set_weights(builtin.encoder.get_weights())
    custom.decoder.set_weights(builtin.decoder.get_weights())
    z = tf.random.stateless_normal([3, 5, L], [1, 2])
    np.testing.assert_allclose(custom.log_joint(tf.constant(x[:5]), z),
                               builtin.log_joint(tf.constant(x[:5]), z), rtol=1e-5)
    assert not builtin.likelihood.trainable_variables


# ----------------------------------------------------- convolutional nets on MNIST

CONV = dict(latent_dim=4, input_shape=(28, 28, 1))


def conv_model(method, num_particles=4, seed=1, **kwargs):
    """A small conv encoder / decoder (8 and 16 filters) through build_model."""
    return rem_tf.build_model(
        method,
        encoder=networks.conv_encoder(4, (28, 28, 1), filters=(8, 16), dense_units=32),
        decoder=networks.conv_decoder(4, (28, 28, 1), filters=(16, 8)),
        num_particles=num_particles, seed=seed, **CONV, **kwargs)


@pytest.fixture(scope="module")
def mnist():
    """500 real MNIST training digits, binarized at 0.5: 300 to train on, 200 held out."""
    dataset = rem_tf.data.load("mnist", "train", source="offline", binarization="threshold",
                               shuffle=False, batch_size=500)
    images = next(iter(dataset)).numpy()
    return images[:300], images[300:]


def gradients(model, x, loss_name, variables):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(getattr(model.compute_losses(tf.constant(x)), loss_name))
    return tape.gradient(loss, variables)


def test_conv_decoder_gradients_of_iwae_and_rem_v1_are_equal(mnist):
    # Same weights and seed state -> the same particles; Eq. 9: both are Σ_k α_k ∇θ log p(x, z_k).
    x = mnist[0][:10].reshape(10, 784)
    iwae, rem = conv_model("iwae", num_particles=20), conv_model("rem_v1", num_particles=20)
    rem.set_weights(iwae.get_weights())
    g_iwae = gradients(iwae, x, "model_loss", iwae.theta_variables)
    g_rem = gradients(rem, x, "model_loss", rem.theta_variables)
    assert len(g_iwae) == 8  # kernels and biases of the dense and three conv layers
    for a, b in zip(g_iwae, g_rem):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in g_iwae) > 1e-3


def test_rem_losses_touch_only_their_own_conv_network(mnist):
    model = conv_model("rem_v1")
    x = mnist[0][:10].reshape(10, 784)
    for loss_name, other in [("model_loss", model.eta_variables),
                             ("proposal_loss", model.theta_variables)]:
        for g in gradients(model, x, loss_name, other):
            assert g is None or not np.any(g.numpy()), loss_name


@pytest.mark.parametrize("method", sorted(rem_tf.METHODS))
def test_every_method_trains_a_conv_model_on_mnist(method, mnist):
    train, held_out = mnist
    model = conv_model(method)
    model.compile(model_optimizer=keras.optimizers.Adam(3e-3),
                  proposal_optimizer=keras.optimizers.Adam(3e-3))
    before = model.log_likelihood(held_out, num_samples=10).mean()
    history = model.fit(train, batch_size=50, epochs=2, verbose=0)
    after = model.log_likelihood(held_out, num_samples=10).mean()
    assert np.isfinite(history.history["loss"]).all()
    assert after > before + 10.0, (method, before, after)  # nats per digit


# ------------------------------------------------------------- saving and export


@keras.saving.register_keras_serializable(package="test_custom_networks")
class ScaledTanh(keras.layers.Layer):
    """A user's own layer: registered, as Keras requires for a .keras file."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return self.factor * tf.tanh(x / self.factor)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="test_custom_networks")
def laplace_likelihood(params):
    return tfd.Independent(tfd.Laplace(params, 0.3), reinterpreted_batch_ndims=1)


def custom_models():
    """A conv model (Bernoulli) and a model with a user's layer and a registered callable
    likelihood."""
    yield "conv", conv_model("rem_v2"), "binary"
    decoder = keras.Sequential([keras.Input((L,)), keras.layers.Dense(16), ScaledTanh(),
                                keras.layers.Dense(D)])
    yield "laplace", rem_tf.build_model(
        "iwae", encoder=networks.GaussianEncoder(ScaledTanh(), L), decoder=decoder,
        likelihood=laplace_likelihood, latent_dim=L, input_shape=(D,), num_particles=5,
        seed=4), "real"


@pytest.mark.parametrize("case", ["conv", "laplace"])
def test_keras_file_and_saved_model_of_custom_networks_give_the_same_log_likelihoods(
        case, mnist, ppca, tmp_path):
    name, model, kind = [c for c in custom_models() if c[0] == case][0]
    x = mnist[1][:6] if kind == "binary" else ppca[0][:6]
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=3, epochs=1, verbose=0)  # trained weights, an advanced seed state
    model.save(tmp_path / "model.keras")
    path = export.export(model, tmp_path / "saved_model", chunk_size=16, elbo_samples=5)
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    loaded = export.load(path)
    assert type(reloaded.decoder) is type(model.decoder)
    # Same weights and the same particle-seed state: the same particles, the same numbers.
    live = model.log_likelihood(x, num_samples=40, chunk_size=16)
    np.testing.assert_allclose(reloaded.log_likelihood(x, num_samples=40, chunk_size=16), live,
                               rtol=1e-5)
    np.testing.assert_allclose(loaded.log_likelihood(x, 40).numpy(), live, rtol=1e-5)
    z = model.encode(x)[0]
    np.testing.assert_allclose(loaded.decode(z).numpy(), model.decode(z).numpy(), rtol=1e-5,
                               atol=1e-6)
    assert loaded.sample(3).shape == (3, *model.input_shape)
    assert export.metadata(path)["decode_outputs"] == (["logits"] if kind == "binary"
                                                       else ["params"])


def test_gaussian_model_exports_its_learned_scale(ppca, tmp_path):
    x, w, mu = ppca
    model = ppca_model("iwae")
    set_ppca(model, w, mu, x)
    loaded = export.load(export.export(model, tmp_path / "sm"))
    outputs = loaded.signatures["decode"](z=tf.zeros([2, L]))
    np.testing.assert_allclose(outputs["loc"].numpy(), np.tile(mu, (2, 1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["scale"].numpy(), SIGMA, rtol=1e-6)
    samples = loaded.sample(4000).numpy()  # x = W z + μ + σ ε
    np.testing.assert_allclose(samples.mean(0), mu, atol=0.15)
    assert np.abs(np.cov(samples.T) - (w @ w.T + SIGMA**2 * np.eye(D))).max() < 0.1 * np.abs(
        w @ w.T).max()
