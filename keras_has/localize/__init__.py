"""From a classifier to boxes and scores: class activation maps of any Keras classifier
(`cams`: CAM and the Grad-CAM family; `cam_methods`: their math; `graph`: finding the
feature map through nested models), boxes from CAMs, normalisation and the fast
threshold sweep (`boxes`), the same box rule in TensorFlow for serving (`boxes_tf`),
WSOL metrics (`metrics.LocalizationEvaluator`), evaluation of a model over a dataset
(`evaluation`) and drawing CAMs and boxes (`visualize`)."""
