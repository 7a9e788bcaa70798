"""Serving a trained model: SavedModel export (`export`) with its signatures and
in-graph preprocessing (`signatures`), evaluation of a saved model or export
(`evaluate`) and prediction on image files (`predict`)."""
