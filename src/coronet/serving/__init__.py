"""Serving: batch prediction, the MLflow pyfunc, the model choice, the page."""
