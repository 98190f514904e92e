"""Drawing from a model: examples x ~ p(x) (`sample`) and the chunked importance-sampled
estimate of the marginal log-likelihood log p(x) (`log_likelihood`).

Functions over a `GenerativeModel`; its `sample`, `chunked_log_likelihood` and
`log_likelihood` methods call them. Every random draw takes the model's next seed
(`GenerativeModel.next_seed`), so a call advances the model's particle seed state.

#### References

Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders", §5:
log p(x) ≈ logsumexp_k log w_k − log K with z_k ~ r(z|x) and K = 5000.
"""

import numpy as np
import tensorflow as tf

from rem_tf import validation
from rem_tf.models import datasets as input_datasets

# Largest K of `log_likelihood` (the particle counts are int64).
MAX_NUM_SAMPLES = validation.INT64_MAX


def sample(model, num_samples, seed=None):
    """Draws examples from the model: z ~ N(0, I), x ~ p(x | decoder(z)).

    Args:
      model: a `GenerativeModel`.
      num_samples: N >= 0, the number of examples (an int, or an int32 scalar
        tensor inside a tf.function).
      seed: optional int >= 0 for a reproducible draw; None uses (and advances)
        the model's particle seed state.

    Returns:
      float32 [num_samples, *input_shape]: binary images for "bernoulli".
    """
    if not tf.is_tensor(num_samples):
        num_samples = validation.check_integer("num_samples", num_samples, minimum=0,
                                               maximum=validation.INT32_MAX)
    if seed is None:
        seed = model.next_seed()
    else:
        seed = tf.constant(
            [validation.check_integer("seed", seed, minimum=0, maximum=validation.INT32_MAX), 0],
            tf.int32)
    z_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    z = tf.random.stateless_normal([num_samples, model.latent_dim], z_seed)  # [N, L]
    params = tf.reshape(model.decode_flat(z), [-1, *model.input_shape])
    return tf.reshape(model.likelihood.sample(params, x_seed), [num_samples, *model.input_shape])


def chunk_counts(num_samples, chunk_size):
    """(K, C, number of chunks ⌈K / C⌉) as int64 scalars: exact for any K < 2**63."""
    num_samples = tf.cast(num_samples, tf.int64)
    chunk = tf.cast(chunk_size, tf.int64)
    return num_samples, chunk, (num_samples + chunk - 1) // chunk


def chunk_mask(num_samples, chunk, i):
    """[C] bool: which particles of chunk i are among the first K (int64 counts)."""
    return tf.range(chunk, dtype=tf.int64) < num_samples - i * chunk


def importance_pass(model, x, proposal, num_samples, chunk_size):
    """One chunked pass of importance sampling from `proposal`.

    `chunk_size` particles are drawn per iteration of a while loop; in the
    last chunk the particles beyond `num_samples` are masked out, so every
    chunk has the same static shape (which XLA needs). Counts are int64, so
    any `num_samples` an int32 or int64 holds is exact.

    Args:
      model: a `GenerativeModel`.
      x: [B, D] flattened images.
      proposal: a distribution over z with batch shape [B] and event [L].
      num_samples: K, a scalar integer tensor.
      chunk_size: C, a Python int or an integer scalar tensor.

    Returns:
      (log p̂(x) = logsumexp_k log w_k − log K [B],
       the self-normalized weighted mean Σ_k α_k z_k [B, L]).
    """
    num_samples, chunk, num_chunks = chunk_counts(num_samples, chunk_size)

    def body(i, log_total, weighted_z):
        # log_total [B]: logsumexp of the log weights so far; weighted_z [B, L]:
        # Σ_k exp(log w_k − log_total) z_k, i.e. the weighted mean so far.
        z = proposal.sample(chunk_size, seed=model.next_seed())  # [C, B, L]
        log_weights = model.log_joint(x, z) - proposal.log_prob(z)  # [C, B]
        valid = chunk_mask(num_samples, chunk, i)  # [C]
        log_weights = tf.where(valid[:, None], log_weights, -np.inf)
        new_total = tf.reduce_logsumexp(
            tf.stack([log_total, tf.reduce_logsumexp(log_weights, axis=0)]), axis=0
        )  # [B]
        weights = tf.exp(log_weights - new_total)  # [C, B]
        weighted_z = (tf.exp(log_total - new_total)[:, None] * weighted_z
                      + tf.einsum("cb,cbl->bl", weights, z))
        return i + 1, new_total, weighted_z

    batch = tf.shape(x)[:1]
    start = (
        tf.constant(0, tf.int64),
        tf.fill(batch, tf.constant(-np.inf, tf.float32)),
        tf.zeros(tf.concat([batch, [model.latent_dim]], 0)),
    )
    _, log_total, weighted_mean = tf.while_loop(lambda i, *_: i < num_chunks, body, start)
    return log_total - tf.math.log(tf.cast(num_samples, tf.float32)), weighted_mean


def chunked_log_likelihood(model, x, num_samples, chunk_size, proposal="encoder"):
    """Builds the chunked IS estimate of log p(x): x [B, D], num_samples scalar -> [B].

    Graph-building function (call it inside a `tf.function`; the exported
    SavedModel does); `log_likelihood` is the user-facing wrapper.

    proposal="encoder": z_k ~ r(z|x), the standard estimate (Burda et al.).
    proposal="shifted": the estimator of the authors' code (their `REM.log_lik`):
    a first pass of K encoder samples gives the weighted mean μ̂ = Σ_k α_k z_k;
    a second pass draws K samples from N(μ̂, diag(scale²)), scale from the
    encoder, and returns logsumexp_k log w_k − log K over the second pass.
    Given the first pass it is an unbiased estimate of p(x), hence (Jensen) a
    stochastic lower bound of log p(x), like the default; it costs two passes.
    """
    validation.check_choice("proposal", proposal, validation.PROPOSALS)
    loc, scale = model.encode_flat(x)  # [B, L] each
    log_px, weighted_mean = importance_pass(
        model, x, model.recognition(loc, scale), num_samples, chunk_size
    )
    if proposal == "encoder":
        return log_px
    shifted = model.recognition(tf.stop_gradient(weighted_mean), scale)
    return importance_pass(model, x, shifted, num_samples, chunk_size)[0]


def log_likelihood_function(model, chunk_size, jit_compile, proposal):
    """The `tf.function` (x [B, D], K) -> [B] of `chunked_log_likelihood`, one per
    (chunk_size, jit_compile, proposal) and model, traced once for any B and K."""
    key = (int(chunk_size), bool(jit_compile), proposal)
    # In the model's __dict__, not a Keras attribute: Keras would track (and save) it.
    cache = model.__dict__.setdefault("_log_likelihood_functions", {})
    if key not in cache:
        cache[key] = tf.function(
            lambda x, num_samples: chunked_log_likelihood(
                model, x, num_samples, key[0], proposal=key[2]
            ),
            jit_compile=key[1],
            reduce_retracing=True,
        )
    return cache[key]


def log_likelihood(model, x, num_samples=5000, chunk_size=200, batch_size=100, jit_compile=None,
                   proposal="encoder"):
    """Importance-sampled log p(x) in nats.

    log p(x) ≈ logsumexp_k log w_k − log K, K = num_samples, computed
    `chunk_size` particles and `batch_size` images at a time, so memory
    is bounded by chunk_size × batch_size particles whatever K and N are.
    With proposal="encoder" (default) z_k ~ r(z|x); with "shifted" the
    authors' estimator (see `chunked_log_likelihood`; two passes of K).

    Args:
      model: a `GenerativeModel`.
      x: [N, *input_shape] (or flattened [N, D]) images in the likelihood's
        support (binary for "bernoulli"); an empty batch gives an empty result. Or a
        finite batched tf.data.Dataset of them (or of (images, ...) tuples or dicts
        with an "image" entry): the same result as on its images concatenated.
      num_samples: K, importance samples per image (an integer in [1, 2**63 − 1]).
      chunk_size: particles drawn at a time.
      batch_size: images evaluated at a time.
      jit_compile: compile with XLA; defaults to the model's `jit_compile`.
      proposal: "encoder" or "shifted".

    Returns:
      float32 numpy array [N].
    """
    validation.check_choice("proposal", proposal, validation.PROPOSALS)
    num_samples = validation.check_integer("num_samples", num_samples, maximum=MAX_NUM_SAMPLES)
    chunk_size = validation.check_integer("chunk_size", chunk_size, maximum=validation.INT32_MAX)
    batch_size = validation.check_integer("batch_size", batch_size)
    if jit_compile is not None and not isinstance(jit_compile, bool):
        raise ValueError(f"jit_compile must be None, True or False, got {jit_compile!r}")
    if isinstance(x, tf.data.Dataset):
        x = input_datasets.to_array(validation.check_dataset(model, x))
    x = validation.check_array(model, x, allow_empty=True)
    flat = x.reshape(len(x), model.data_dim)  # [N, D]
    if jit_compile is None:
        jit_compile = bool(model.compiled and model.jit_compile)
    function = log_likelihood_function(model, min(chunk_size, num_samples), jit_compile, proposal)
    count = tf.constant(num_samples, tf.int64)
    out = [
        function(tf.constant(flat[i : i + batch_size]), count).numpy()
        for i in range(0, len(flat), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros([0], np.float32)
