"""tf.data datasets as model input: the images of an element (a tensor, an ``(x, ...)``
tuple or a dict with an ``"image"`` entry, as ``tfds.load`` gives) and a batched
dataset's images as one array (for ``log_likelihood`` and ``evaluation.evaluate_model``)."""

import numpy as np
import tensorflow as tf

IMAGE_KEY = "image"  # the images of a dict element (TFDS's name for them)


def images_spec(spec):
    """The TensorSpec of the images of an element spec; ValueError for a dict without them."""
    if isinstance(spec, dict):
        if IMAGE_KEY not in spec:
            raise ValueError(
                f"the dataset's elements are dicts without an {IMAGE_KEY!r} entry (keys: "
                f"{', '.join(map(str, spec))}); map them to the images first, e.g. "
                "dataset.map(lambda e: e['<your image key>'])")
        return spec[IMAGE_KEY]
    return spec[0] if isinstance(spec, (tuple, list)) else spec


def element_images(element):
    """The images of one element (tensor, tuple or dict)."""
    if isinstance(element, dict):
        return element[IMAGE_KEY]
    return element[0] if isinstance(element, (tuple, list)) else element


def images_only(dataset):
    """``dataset`` with dict elements replaced by their images (others as they are)."""
    if isinstance(dataset.element_spec, dict):
        images_spec(dataset.element_spec)  # the key exists
        return dataset.map(lambda element: element[IMAGE_KEY])
    return dataset


def first_batch_max(dataset):
    """The largest value of the first batch (one batch is read), or None if there is none."""
    for element in dataset.take(1):
        return float(tf.reduce_max(tf.cast(element_images(element), tf.float32)))
    return None


def to_array(dataset, name="x"):
    """The images of a batched dataset, concatenated: a NumPy array [N, ...]."""
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError(f"{name} is an infinite dataset (e.g. .repeat()); give a finite one, "
                         "e.g. dataset.take(num_batches)")
    images_spec(dataset.element_spec)
    batches = [np.asarray(element_images(element)) for element in dataset]
    if not batches:
        raise ValueError(f"{name} is an empty dataset (no batches)")
    if batches[0].ndim < 2:
        raise ValueError(f"{name}: expected a batched dataset (elements [B, *input_shape]), "
                         f"got elements of shape {batches[0].shape}; batch it, e.g. "
                         "dataset.batch(100)")
    return np.concatenate(batches)
