"""Experiments on top of training and evaluation, all configurations of one loop
(`runner`: arms x seeds -> runs -> evaluation -> summary, Markdown table, results.json,
with `report` and `figures`): method comparisons over seeds (`comparison`), the
pretrained fine-tuning benchmark (`finetune_benchmark`) and hyperparameter search
(`tuning`); and the linear probe (`probe`)."""
