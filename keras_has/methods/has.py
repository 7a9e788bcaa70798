"""`has`: Hide-and-Seek (Singh & Lee, ICCV 2017), the grid hiding of `keras_has.hiding`
applied per image in `tf.data` (`HidingConfig`: grid sizes, hide probability). The
model and loss are the baseline's."""
from keras_has.methods.base import Method


__all__ = ["HideAndSeek"]


class HideAndSeek(Method):
    name = "has"
    title = "Hide-and-Seek"

    def check(self, config) -> None:
        if not config.hiding.enabled:
            raise ValueError(
                "method: 'has' needs Hide-and-Seek settings (grid_sizes with a non-zero "
                f"size and hide_prob > 0), received grid_sizes="
                f"{list(config.hiding.grid_sizes)} hide_prob={config.hiding.hide_prob}")

    def pipeline_hiding(self, hiding, image_size):
        return hiding.as_pipeline_arg(image_size)
