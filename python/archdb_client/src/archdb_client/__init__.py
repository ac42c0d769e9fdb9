"""archdb for notebooks and agents: LEMUR's ``data()`` habit over archdb's REST API.

>>> from archdb_client import data, predict
>>> df = data(task="img-classification", dataset="cifar-10", only_best_accuracy=True)
>>> predict("model.onnx", dataset="cifar10", epoch=200)

The module-level functions use a default :class:`Client` configured by ``ARCHDB_URL`` (default
``http://127.0.0.1:8080``) and ``ARCHDB_API_TOKEN``; make a ``Client(url, token=...)`` for
another server.
"""

from .client import LEMUR_COLUMNS, NN_STAT_COLUMNS, ArchdbError, Client

__all__ = [
    "ArchdbError",
    "Client",
    "LEMUR_COLUMNS",
    "NN_STAT_COLUMNS",
    "data",
    "nb201",
    "pareto",
    "predict",
    "text",
    "upload",
]

_default = None


def _client():
    global _default
    if _default is None:
        _default = Client()
    return _default


def data(*args, **kwargs):
    """LEMUR's ``ab.nn.api.data(...)``: see :meth:`Client.data`."""
    return _client().data(*args, **kwargs)


def predict(*args, **kwargs):
    """Predicted accuracy of ONNX models: see :meth:`Client.predict`."""
    return _client().predict(*args, **kwargs)


def upload(*args, **kwargs):
    """Stores an ONNX model: see :meth:`Client.upload`."""
    return _client().upload(*args, **kwargs)


def nb201(*args, **kwargs):
    """Every figure of a NAS-Bench-201 cell: see :meth:`Client.nb201`."""
    return _client().nb201(*args, **kwargs)


def pareto(*args, **kwargs):
    """Accuracy-against-cost Pareto front: see :meth:`Client.pareto`."""
    return _client().pareto(*args, **kwargs)


def text(*args, **kwargs):
    """An architecture as text for language models: see :meth:`Client.text`."""
    return _client().text(*args, **kwargs)
