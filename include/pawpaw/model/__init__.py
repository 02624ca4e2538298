"""The model: timm backbone, preprocessing, ONNX embedding, regression heads, fine-tuning, and
the MLflow pyfunc that serves them. Nothing is imported here: the pyfunc ships a subset of
these modules as its own code, and that subset must import without torch."""
