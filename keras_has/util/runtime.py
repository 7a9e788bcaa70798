"""Process-wide TensorFlow settings that a command applies before TensorFlow runs.

TensorFlow reads these from the environment once per process, so they belong to the
process that runs a command (the `keras-has` command line applies them), never to a
library call inside somebody else's program. A value already in the environment is kept.
"""
import os

__all__ = ["INFERENCE_ENVIRONMENT", "prefer_inference_threading"]

# oneDNN's parallel loops run their last share of work on the calling thread instead of
# handing every share to TensorFlow's intra-op pool and waiting. The shares and their
# order are the same, so the outputs are identical to the last bit; an evaluation pass,
# whose forward runs beside the input pipeline and the box sweep, uses ~3% less CPU and
# time (docs/design/performance.md, "End to end"). Training is not given it: there the
# calling thread is one of the inter-op threads that overlap the backward pass's
# independent convolutions, and steps were 3-9% slower with it.
INFERENCE_ENVIRONMENT = {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"}


def prefer_inference_threading(environ=None) -> dict:
    """Sets `INFERENCE_ENVIRONMENT` in `environ` (default `os.environ`) where unset.

    Call it before TensorFlow runs its first operation in the process (TensorFlow reads
    the variables once). Returns the variables with the values now in `environ`.
    """
    environ = os.environ if environ is None else environ
    for name, value in INFERENCE_ENVIRONMENT.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in INFERENCE_ENVIRONMENT}
