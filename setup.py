"""Installs rem_tf: `pip install .` (add `[test]` for the test tools, `[docs]` for the docs).

Installs the `rem-tf` command (`rem_tf.cli`, the same as `python -m rem_tf` and run.py).
pyproject.toml holds the build system and the configuration of pytest and ruff.
"""

from setuptools import find_packages, setup

# The documentation's tools; the tests build the docs (tests/test_docs.py), so `[test]` has them.
DOCS_REQUIREMENTS = ["sphinx>=7.2", "myst-parser>=2.0", "furo>=2024.1"]

setup(
    name="rem_tf",
    version="0.1.0",
    description=(
        "VAE, IWAE and Reweighted Expectation Maximization (Dieng & Paisley, 2019) "
        "for deep generative models in TensorFlow 2 / Keras 3 / TFP"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # Only rem_tf: configs/, tests/, experiments/ stay in the checkout (not importable).
    packages=find_packages(include=["rem_tf", "rem_tf.*"]),
    # The shipped presets (rem_tf.presets): weights, configs, metadata and model cards.
    package_data={"rem_tf.presets": ["*/*.json", "*/*.h5", "*/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3,<4",
        "tensorflow-probability[tf]>=0.24,<0.26",
        "tensorflow-datasets>=4.9,<5",
        "importlib_resources",  # TFDS's download_and_prepare imports it
        "absl-py>=2.0",
        "ml-collections>=0.1.1",
        "numpy>=1.26",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "tensorboard>=2.16",  # keras.callbacks.TensorBoard and `tensorboard --logdir` need it
    ],
    entry_points={"console_scripts": ["rem-tf = rem_tf.cli:main"]},
    extras_require={
        # ruff: .ci/run and the README's test command lint with pyproject.toml's rules.
        "test": ["pytest>=7", "pytest-xdist>=3", "ruff>=0.6", *DOCS_REQUIREMENTS],
        "docs": DOCS_REQUIREMENTS,
    },
)
