"""The fast path computes exactly what the plain path computes, without retracing,
in bounded memory. (Speed itself is measured in benchmarks/, never asserted here.)"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import rem_tf
from rem_tf import estimators
from rem_tf.models import sampling

SMALL = dict(latent_dim=3, hidden_units=(16, 16), input_shape=(32,), num_particles=50)


def test_fused_bernoulli_likelihood_matches_plain_value_and_gradient():
    rng = np.random.default_rng(0)
    x = tf.constant((rng.random((4, 32)) < 0.3).astype(np.float32))
    logits = tf.constant(rng.normal(size=(7, 4, 32)).astype(np.float32) * 4)
    upstream = tf.constant(rng.normal(size=(7, 4)).astype(np.float32))
    values, grads = [], []
    for fn in (estimators.bernoulli_log_prob, estimators.bernoulli_log_prob_fused):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = fn(x, logits)
            total = tf.reduce_sum(upstream * value)
        values.append(value.numpy())
        grads.append(tape.gradient(total, logits).numpy())
    np.testing.assert_allclose(values[1], values[0], rtol=1e-6)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def _op_types(function, *specs):
    return sorted(op.type for op in
                  tf.function(function).get_concrete_function(*specs).graph.get_operations())


def test_the_default_model_builds_the_same_ops_as_the_paper_formulas():
    # The default MLP-Bernoulli path is the pre-custom-networks graph: log p(x, z) is
    # log N(z; 0, I) + the fused Bernoulli log-probability of the MLP decoder's logits,
    # and the encoder is called on the flattened images, with nothing added around them.
    model = rem_tf.build_model("iwae", seed=5, **SMALL)
    x, z = tf.TensorSpec([None, 32]), tf.TensorSpec([None, None, 3])

    def reference(x, z):
        return (estimators.standard_normal_log_prob(z)
                + estimators.bernoulli_log_prob_fused(x, model.decoder(z)))

    assert _op_types(model.log_joint, x, z) == _op_types(reference, x, z)
    assert _op_types(model.encode_flat, x) == _op_types(lambda x: model.encoder(x), x)


def _losses_and_gradients(model, x):
    with tf.GradientTape(persistent=True) as tape:
        losses = model.compute_losses(tf.constant(x))
        model_loss = tf.reduce_mean(losses.model_loss)
        proposal_loss = tf.reduce_mean(losses.proposal_loss)
    grads = tape.gradient(model_loss, model.decoder.trainable_variables)
    grads += tape.gradient(proposal_loss, model.encoder.trainable_variables)
    return [model_loss.numpy(), proposal_loss.numpy()], [g.numpy() for g in grads]


@pytest.mark.parametrize("method", sorted(rem_tf.METHODS))
def test_fast_and_plain_steps_give_the_same_losses_and_gradients(method):
    x = (np.random.default_rng(1).random((8, 32)) < 0.3).astype(np.float32)
    plain = rem_tf.build_model(method, seed=5, fused_likelihood=False, **SMALL)
    fast = rem_tf.build_model(method, seed=5, fused_likelihood=True, **SMALL)
    fast.set_weights(plain.get_weights())  # same networks, same sampler state
    (plain_losses, plain_grads), (fast_losses, fast_grads) = (
        _losses_and_gradients(plain, x), _losses_and_gradients(fast, x))
    np.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-5)
    for a, b in zip(fast_grads, plain_grads):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_training_traces_the_step_once():
    x = (np.random.default_rng(3).random((100, 32)) < 0.3).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(20, drop_remainder=True)
    model = rem_tf.build_model("rem_v2", seed=5, **SMALL)
    traces = []
    original_step = model.train_step

    def counting_step(data):  # Python runs only while TensorFlow traces
        traces.append(1)
        return original_step(data)

    model.train_step = counting_step
    model.compile(optimizer="adam")
    model.fit(dataset, epochs=3, verbose=0)
    assert len(traces) == 1
    model.log_likelihood(x, num_samples=30, chunk_size=7, batch_size=20)
    model.log_likelihood(x, num_samples=60, chunk_size=7, batch_size=20)
    function = sampling.log_likelihood_function(model, 7, False, "encoder")
    assert function.experimental_get_tracing_count() == 1


def test_log_likelihood_memory_is_bounded_for_5000_particles():
    # Unchunked, K = 5000 particles × 400 images × 784 logits would need
    # 6.3 GB for one float32 tensor, and even 100 images at a time 1.6 GB more
    # than the K = 600 warm-up (188 MB); chunked (200 particles) both calls
    # need the same few hundred MB. The absolute peak depends on the machine
    # (TensorFlow's thread pools and allocator: 1.3 GiB here, 3.1 GiB on one CI
    # host), so the test bounds the growth, and the peak only loosely.
    script = textwrap.dedent("""
        import json, resource, numpy as np, rem_tf
        model = rem_tf.build_model("iwae", seed=0)
        x = (np.random.default_rng(0).random((400, 28, 28, 1)) < 0.13).astype("float32")
        model.log_likelihood(x[:100], num_samples=600)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        values = model.log_likelihood(x, num_samples=5000)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"growth_gib": (after - before) / 2**20, "peak_gib": after / 2**20,
                          "finite": bool(np.all(np.isfinite(values)))}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["finite"]
    assert result["growth_gib"] < 0.5, result
    assert result["peak_gib"] < 6.0, result
