"""Utilities below everything else: atomic files (`files`), console set-up (`console`)
and a command process's runtime settings (`runtime`). Imports nothing else of keras_has."""
