"""keras-has's evaluation pass in a process of its own, set up as ``keras-has evaluate``
sets up its process (``keras_has.util.runtime.prefer_inference_threading`` before
TensorFlow starts): the side of ``benchmark_end_to_end.py``'s evaluation that a user's
``keras-has evaluate`` runs, beside a PyTorch evaluation process.

Protocol (``torch_bench.send_message`` / ``receive_message`` on stdin / stdout): the
first message is a dict with ``model_path``, ``source``, ``split``, ``image_size``,
``batch_size`` and ``settings`` (``run_localization``'s keyword arguments); the reply
describes the process. Then ``("evaluate", {})`` runs one pass, timed from building the
evaluation dataset to the metrics, and replies ``{"seconds": s, "metrics": dict}``;
``("quit", None)`` ends the process. Round 0 (the first ``evaluate``) traces.
"""
import os
import sys
import time

from keras_has.util import runtime

ENVIRONMENT = runtime.prefer_inference_threading()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torch_bench import serve_runner  # noqa: E402


class Runner:
    def __init__(self, cfg):
        from keras_has import data
        from keras_has.serve.evaluate import load_for_evaluation

        self.cfg = cfg
        self.model, loaded = load_for_evaluation(cfg["model_path"])
        self.preprocessing = loaded["preprocessing"]
        self.source = data.get_source(cfg["source"])

    def info(self):
        import tensorflow as tf

        return dict(pid=os.getpid(), environment=ENVIRONMENT, tensorflow=tf.__version__)

    def evaluate(self):
        from keras_has import data
        from keras_has.localize.evaluation import run_localization

        c = self.cfg
        start = time.perf_counter()
        dataset = data.make_eval_dataset(self.source, c["image_size"], c["batch_size"], split=c["split"],
                                         preprocessing=self.preprocessing)
        result = run_localization(self.model, dataset, verbose=0, **c["settings"])
        return dict(seconds=time.perf_counter() - start, metrics=result.metrics)


if __name__ == "__main__":
    serve_runner(Runner)
