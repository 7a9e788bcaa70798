"""Where training runs: the `tf.distribute` strategy for a config name, the worker's
identity under several workers, and the mixed-precision policy."""
from __future__ import annotations

import os

import tensorflow as tf

__all__ = ["make_strategy", "worker_identity", "resolve_mixed_precision"]


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for a `TrainConfig.strategy` name.

    `mirrored`: all local GPUs, or all logical CPU devices when there is no GPU (one,
    unless the process split the CPU with `tf.config.set_logical_device_configuration`).
    `multi_worker`: `MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG`.
    `tpu`: `TPUStrategy` on `tpu` (name or grpc address; empty = default TPU).
    `one_device`: the first GPU, else the CPU.
    """
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("strategy: 'multi_worker' needs the TF_CONFIG environment "
                             "variable (cluster and task); received none")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy((gpus[0].name if gpus else "/cpu:0"))
    raise ValueError(f"strategy: expected one of mirrored, multi_worker, tpu, "
                     f"one_device, received {name!r}")


def worker_identity(strategy) -> tuple[bool, int]:
    """(is_chief, task_id) of this process; single-process strategies are the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    if task_type == "chief":
        return True, task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (task_type == "worker" and task_id == 0 and not has_chief), task_id


def resolve_mixed_precision(policy: str, strategy_name: str) -> str | None:
    """The Keras dtype policy name for a config value, or None for float32.

    Raises ValueError for `mixed_float16` without a GPU.
    """
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    if policy == "none":
        return None
    if policy == "auto":
        return "mixed_float16" if has_gpu and strategy_name != "tpu" else "mixed_bfloat16"
    if policy == "mixed_float16" and not has_gpu:
        raise ValueError("mixed_precision: 'mixed_float16' needs a GPU (none found); "
                         "use 'mixed_bfloat16' on CPU and TPU, or 'auto'")
    return policy
