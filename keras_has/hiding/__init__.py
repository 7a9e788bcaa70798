"""Hide-and-Seek's hiding of image patches: the op (`ops.hide_patches`, a seeded,
graph-safe grid mask), the Keras layer (`layer.HideAndSeek`, identity at inference) and
their argument check (`keras_has.config.hiding_args`)."""
from keras_has.hiding.layer import HideAndSeek
from keras_has.hiding.ops import hide_patches, stateless_seed, validate_hiding_args

__all__ = ["hide_patches", "HideAndSeek", "stateless_seed", "validate_hiding_args"]
