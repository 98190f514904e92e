"""What both benchmark scripts share, without importing TensorFlow or torch.

`run_benchmarks.py` runs in the project's environment and `authors_baseline.py`
in a torch-only one, so the CPU name and the FLOP count they report live here.
"""

import platform

LATENT, HIDDEN, PIXELS = 20, (200, 200), 784  # the paper's 20-200-200-784 decoder


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def decoder_forward_flops(num_particles, batch):
    """FLOPs of one decoder forward pass over K·B particles (its matmuls only):
    F = 2·K·B·(L·H + H·H + H·D)."""
    sizes = (LATENT,) + HIDDEN + (PIXELS,)
    return 2 * num_particles * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
