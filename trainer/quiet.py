"""Import TensorFlow without the native start-up lines it writes to stderr."""

from __future__ import annotations

import os
from types import ModuleType


def import_tensorflow() -> ModuleType:
    """Import TensorFlow and initialize its devices.

    Unless ``TF_CPP_MIN_LOG_LEVEL`` is set below 2 (it defaults to 2 here), file
    descriptor 2 points to /dev/null meanwhile: TensorFlow's native libraries write INFO
    lines and CUDA probe errors there before its log level applies. Python exceptions
    still surface normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        quiet = int(os.environ["TF_CPP_MIN_LOG_LEVEL"]) >= 2
    except ValueError:
        quiet = True
    saved = os.dup(2) if quiet else -1
    if quiet:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
        return tf
    finally:
        if quiet:
            os.dup2(saved, 2)
            os.close(saved)
