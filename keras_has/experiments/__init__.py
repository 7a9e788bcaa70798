"""Experiments on top of training and evaluation: method comparisons over seeds
(`comparison`), the pretrained fine-tuning benchmark (`finetune_benchmark`),
hyperparameter search (`tuning`) and the linear probe (`probe`)."""
