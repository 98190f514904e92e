r"""Trains, exports and evaluates one rem_tf model: `rem_tf.cli`, the same as `rem-tf`.

  python run.py --config=configs/quick.py --workdir=/tmp/quick     # minutes on a CPU
  python run.py --method=rem_v2                                    # the paper's settings
  python run.py --mode=evaluate --preset=rem_v2_mnist             # a trained model of the zoo

`python run.py --help` lists the flags; docs/experiments.md says more.
"""

import os

# Before TensorFlow loads (`import rem_tf` loads it): none of its C++ start-up lines; absl's
# pre-init lines ignore TF_CPP_MIN_LOG_LEVEL, so stderr is /dev/null while it loads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_stderr, _devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
    os.dup2(_devnull, 2)
try:
    from rem_tf import cli
finally:
    os.dup2(_stderr, 2)
    os.close(_devnull)

if __name__ == "__main__":
    cli.main()
