"""Deployment: ONNX export, the deploy graph rewrite, the ONNX Runtime detector and INT8.
Importing the package loads nothing."""
