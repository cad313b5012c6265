"""The model registry and what it loads. Only this package and the worker import torch."""
