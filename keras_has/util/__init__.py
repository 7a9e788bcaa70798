"""Utilities below everything else: atomic files (`files`) and console set-up
(`console`). Imports nothing else of keras_has."""
