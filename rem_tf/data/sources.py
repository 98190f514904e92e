"""The one interface every data source implements, and ``auto``'s order.

A source is a module with three functions of a ``common.Request`` (name, data_dir, path)
and a base split (``train``, ``validation`` or ``test``):

  check(request)        DataError if the source cannot serve this request (before any I/O)
  has(request, split)   whether ``auto`` should use it: the data is here now (or, for the
                        offline copy, reachable through pip) — never a wait on a dataset hub
  read(request, split)  the decoded images (``arrays.Raw``), fetched or downloaded if that
                        is what the source does; DataError naming the fix otherwise

A new source is one new module implementing them and one entry in ``SOURCES``.  What
follows the read (binarization, shuffling, batching) is ``pipeline.py``'s, for all.
"""

from __future__ import annotations

from . import files, npz, offline, tfds
from .arrays import Raw
from .common import TFDS_NAMES, DataError, Request, cache_dir, how_to_get

SOURCES = {"files": files, "tfds": tfds, "offline": offline, "npz": npz}
AUTO_ORDER = ("files", "tfds", "offline")


def check(request: Request, source: str) -> None:
    """DataError unless ``source`` (or, for ``auto``, one of its sources) serves ``request``."""
    if source != "auto":
        SOURCES[source].check(request)
    elif not _serving(request):
        raise DataError(f"no source of source='auto' serves {request.name!r}; "
                        "for your own images use source='npz', path=<file>")


def _serving(request: Request) -> list[str]:
    serving = []
    for name in AUTO_ORDER:
        try:
            SOURCES[name].check(request)
        except DataError:
            continue
        serving.append(name)
    return serving


def read(request: Request, split: str, source: str) -> Raw:
    """Base split ``split`` from ``source``; ``auto``: the first of ``AUTO_ORDER`` that has it."""
    if source != "auto":
        return SOURCES[source].read(request, split)
    for name in _serving(request):
        if SOURCES[name].has(request, split):
            return SOURCES[name].read(request, split)
    looked = (f"local files {files.looked(request, split)} and " if request.name in TFDS_NAMES
              else "")
    tfds_name = tfds.tfds_name(request.name)
    raise DataError(
        f"no data found for {request.name!r} split {split!r} (source='auto' looked for "
        f"{looked}an already prepared TFDS {tfds_name!r}"
        + ("; TFDS omniglot is not Burda's split and is used only with source='tfds'"
           if request.name == "omniglot" else "")
        + "). " + how_to_get(request.name, cache_dir(request.data_dir))
    )
