"""Models built from config by name. Importing this package registers every builder."""

from cnnlab.models import convnet  # noqa: F401  (registers convnet, mlp)
from cnnlab.models import text as _text  # noqa: F401  (registers kim, emb2d, bag)
from cnnlab.models.registry import InputSpec, build_model, count_parameters

__all__ = ["InputSpec", "build_model", "count_parameters"]
