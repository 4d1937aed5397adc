"""The served model as MLflow loads it: a model from code (``mlflow.models.set_model``), so nothing is
pickled and the logged model runs the code in this package, not a snapshot of Python objects."""

from mlflow.models import set_model

from coronet.serving.pyfunc import CoronetImageModel

set_model(CoronetImageModel())
