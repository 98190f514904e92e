"""`python -m rem_tf`: the command line of `rem_tf.cli` (the same as `rem-tf` and run.py)."""

from rem_tf import cli

if __name__ == "__main__":
    cli.main()
