"""From a classifier to boxes and scores: class activation maps (`cams`), boxes from
CAMs and the fast threshold sweep (`boxes`), the same box rule in TensorFlow for
serving (`boxes_tf`), WSOL metrics (`metrics.LocalizationEvaluator`), evaluation of a
model over a dataset (`evaluation`) and drawing CAMs and boxes (`visualize`)."""
