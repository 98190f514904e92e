r"""REM at small K (issue 14): watch the encoder's scale and the width of s step by step.

  python experiments/small_k.py --num_particles=2 --covariance=unweighted   # NaN at step ~105
  python experiments/small_k.py --num_particles=2 --covariance=weighted    # trains

Trains REM (v2 by default) with the model and data of `--config` (configs/quick.py: real
MNIST from the offline copy, batch 100) for `--steps` steps and every
`--every` steps prints, on one fixed batch: the ELBO, the mean log scale of the
encoder, the width of the hyperproposal s in the encoder's units
E[(z' − loc)² / σ²] (z' ~ s), the same width weighted by β (what the η loss
fits the encoder to: above 1 the encoder's scale grows), and the mean largest
α and β.

Measured on this project's 2-core AMD EPYC machine (shared with other jobs),
log scale at steps 1 → 101, β-weighted width in brackets:
  K = 2 unweighted:  0.00 → 9.1 (1.2–1.6), NaN at step 105 (Cholesky fails)
  K = 3 unweighted: −0.05 → 0.9 (0.9–1.25), ELBO −205 → −5,061 at step 300
  K = 5 unweighted: −0.08 → −0.37 (0.8–1.14), ELBO −205 → −154 at step 150
  K = 2 weighted:   −0.07 → −1.05 (0.8–1.04), ELBO −206 → −165 at step 150
"""

import json
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rem_tf import estimators  # noqa: E402
from rem_tf.experiment import builders  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
_CONFIG = config_flags.DEFINE_config_file(
    "config", str(ROOT / "configs" / "quick.py"), "The model and data.", lock_config=False)

_METHOD = flags.DEFINE_enum("method", "rem_v2", ["rem_v1", "rem_v2"], "REM version.")
_K = flags.DEFINE_integer("num_particles", 2, "K.")
_COVARIANCE = flags.DEFINE_enum("covariance", "unweighted", list(estimators.COVARIANCES),
                                "Moment matching: Eq. 23 (unweighted) or Eq. 22 (weighted).")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps.")
_EVERY = flags.DEFINE_integer("every", 10, "Print every this many steps.")


def main(_):
    config = _CONFIG.value
    config.method, config.training.num_particles = _METHOD.value, _K.value
    config.model.covariance = _COVARIANCE.value
    dataset, steps_per_epoch = builders.train_dataset(config, config.training.batch_size)
    model = builders.build_model_from_config(
        config, decoder_output_bias=builders.output_bias(config))
    builders.compile_model(model, config, steps_per_epoch)
    x = model.flatten_images(next(iter(dataset)))  # the fixed batch of the diagnostics
    num_particles = model.num_particles

    @tf.function
    def diagnostics(x):
        loc, scale, recognition, z, _, log_weights = model.importance_sample(x, num_particles)
        alpha = estimators.normalized_weights(log_weights)  # [K, B]
        s = estimators.hyperproposal(z, alpha, model.covariance, model.ridge)
        z_s = s.sample(num_particles, seed=model.next_seed())  # [K, B, L]
        beta = estimators.normalized_weights(model.log_joint(x, z_s) - s.log_prob(z_s))
        width = tf.square((z_s - loc) / scale)  # [K, B, L]
        return {
            "elbo": tf.reduce_mean(log_weights),
            "log_scale": tf.reduce_mean(tf.math.log(scale)),
            "width_of_s": tf.reduce_mean(width),
            "beta_weighted_width": tf.reduce_mean(tf.reduce_sum(beta[..., None] * width, 0)),
            "alpha_max": tf.reduce_mean(tf.reduce_max(alpha, 0)),
            "beta_max": tf.reduce_mean(tf.reduce_max(beta, 0)),
        }

    train_step = tf.function(model.train_step)
    for step, batch in enumerate(dataset.take(_STEPS.value), start=1):
        loss = float(train_step(batch)["loss"])
        if step % _EVERY.value == 1 or step == _STEPS.value or not np.isfinite(loss):
            row = {k: round(float(v), 3) for k, v in diagnostics(x).items()}
            print(json.dumps({"step": step, **row}), flush=True)
        if not np.isfinite(loss):
            print(f"NaN loss at step {step}")
            return


if __name__ == "__main__":
    app.run(main)
