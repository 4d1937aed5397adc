"""CoroNet: a chest X-ray classifier (COVID-19, normal, bacterial and viral pneumonia) as a DVC pipeline."""

__version__ = "0.1.0"
