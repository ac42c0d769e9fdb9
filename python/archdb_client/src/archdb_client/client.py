"""The REST client behind the module-level functions."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

import pandas as pd
import requests

#: The columns of LEMUR's ``ab.nn.api.data()`` (2.2.11), in its order.
LEMUR_COLUMNS = [
    "id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id",
    "epoch", "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm",
]

#: The columns ``data(include_nn_stats=True)`` adds, in LEMUR's order.
NN_STAT_COLUMNS = [
    "nn_total_params", "nn_trainable_params", "nn_frozen_params", "nn_total_layers",
    "nn_leaf_layers", "nn_max_depth", "nn_flops", "nn_model_size_mb", "nn_buffer_size_mb",
    "nn_total_memory_mb", "nn_dropout_count", "nn_has_attention", "nn_has_residual",
    "nn_is_resnet_like", "nn_is_vgg_like", "nn_is_inception_like", "nn_is_densenet_like",
    "nn_is_unet_like", "nn_is_transformer_like", "nn_is_mobilenet_like",
    "nn_is_efficientnet_like", "nn_code_length", "nn_num_classes", "nn_num_functions",
    "nn_uses_sequential", "nn_uses_modulelist", "nn_uses_moduledict", "nn_stats_meta",
    "nn_stats_error",
]

#: archdb's own result columns, appended by ``data(archdb_columns=True)``.
ARCHDB_COLUMNS = ["benchmark", "split", "seed", "transform", "architecture_id"]


class ArchdbError(Exception):
    """An answer other than 2xx; ``problem`` is the server's problem+json document."""

    def __init__(self, status: int, problem: dict[str, Any]):
        self.status = status
        self.problem = problem
        self.detail = problem.get("detail", "")
        super().__init__(f"{status} {problem.get('title', '')}: {self.detail}".strip())


def _values(value: Any) -> list[Any]:
    """LEMUR's filter convention: None = no filter, a tuple (or list, set) = IN, else equality."""
    if value is None:
        return []
    if isinstance(value, (tuple, list, set, frozenset)):
        return list(value)
    return [value]


def _onnx_bytes(onnx_or_path: bytes | str | os.PathLike) -> bytes:
    if isinstance(onnx_or_path, (bytes, bytearray, memoryview)):
        return bytes(onnx_or_path)
    return Path(onnx_or_path).read_bytes()


class Client:
    """A connection to one archdb server.

    ``url`` defaults to ``ARCHDB_URL`` or ``http://127.0.0.1:8080``; ``token`` to
    ``ARCHDB_API_TOKEN`` (sent as ``Authorization: Bearer``; the server needs it for writes
    when it has one).
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 120):
        self.url = (url or os.environ.get("ARCHDB_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.token = token if token is not None else os.environ.get("ARCHDB_API_TOKEN")
        self.timeout = timeout
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        if not response.ok:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason, "detail": response.text}
            raise ArchdbError(response.status_code, problem)
        return response

    def data(
        self,
        only_best_accuracy: bool = False,
        task: str | tuple | None = None,
        dataset: str | tuple | None = None,
        metric: str | tuple | None = None,
        nn: str | tuple | None = None,
        epoch: int | tuple | None = None,
        max_rows: int | None = None,
        sql: Any = None,
        nn_prefixes: tuple | None = None,
        unique_nn: bool = False,
        include_nn_stats: bool = False,
        *,
        benchmark: str | tuple | None = None,
        archdb_columns: bool = False,
    ) -> pd.DataFrame:
        """LEMUR's ``ab.nn.api.data(...)``: benchmark results as a DataFrame with LEMUR's
        columns (``LEMUR_COLUMNS``, then ``NN_STAT_COLUMNS`` with ``include_nn_stats``), from
        ``GET /v1/results``.

        Filters take a value or a tuple (IN), as in LEMUR. ``nn_prefixes`` match exactly and
        case-sensitively (LEMUR uses SQL LIKE). archdb also holds other benchmarks than LEMUR:
        ``benchmark="lemur"`` restricts to LEMUR's rows; ``archdb_columns=True`` appends
        ``benchmark, split, seed, transform, architecture_id``. ``sql`` (LEMUR's ``JoinConf``)
        is not supported: use ``GET /v1/results/top-models`` or ``/v1/results/pairs``.
        """
        if sql is not None:
            raise NotImplementedError(
                "data(sql=JoinConf) is not supported; use GET /v1/results/top-models "
                "(num_joint_nns > 1) or /v1/results/pairs")
        params: list[tuple[str, Any]] = [("format", "json"), ("include_code", "true")]
        for name, value in (("benchmark", benchmark), ("task", task), ("dataset", dataset),
                            ("metric", metric), ("nn", nn), ("epoch", epoch),
                            ("nn_prefix", nn_prefixes)):
            params.extend((name, v) for v in _values(value))
        for name, flag in (("only_best_accuracy", only_best_accuracy), ("unique_nn", unique_nn),
                           ("include_nn_stats", include_nn_stats)):
            if flag:
                params.append((name, "true"))
        if max_rows:
            params.append(("max_rows", int(max_rows)))
        rows = self._request("GET", "/v1/results", params=params).json()
        columns = list(LEMUR_COLUMNS)
        if include_nn_stats:
            columns += NN_STAT_COLUMNS
        if archdb_columns:
            columns += ARCHDB_COLUMNS
        frame = pd.DataFrame(rows)
        for c in columns:
            if c not in frame:
                frame[c] = None
        return frame[columns]

    def predict(
        self,
        onnx_or_path: bytes | str | os.PathLike | Iterable[bytes | str | os.PathLike],
        dataset: str | None = None,
        epoch: int | None = None,
        metric: str = "acc",
        **hyperparameters: Any,
    ) -> dict[str, Any]:
        """Predicted accuracy of one ONNX model (bytes or a path) or a list of them, from
        ``POST /v1/predictions``. ``dataset``, ``metric``, ``epoch`` and the keyword
        ``hyperparameters`` (e.g. ``lr=0.01, batch=64``) say what to predict; the answer is the
        server's JSON: per predictor, per model the accuracy, its spread, an out-of-distribution
        score and the nearest measured architectures.
        """
        if isinstance(onnx_or_path, (bytes, bytearray, memoryview, str, os.PathLike)):
            models = [onnx_or_path]
        else:
            models = list(onnx_or_path)
        target: dict[str, Any] = {"metric": metric}
        if dataset is not None:
            target["dataset"] = dataset
        if epoch is not None:
            target["epoch"] = epoch
        if hyperparameters:
            target["hyperparameters"] = hyperparameters
        body = {
            "onnx_base64": [base64.b64encode(_onnx_bytes(m)).decode("ascii") for m in models],
            "targets": [target],
        }
        return self._request("POST", "/v1/predictions", json=body).json()

    def upload(self, path: str | os.PathLike, name: str | None = None,
               family: str | None = None, source: str | None = None) -> dict[str, Any]:
        """Stores an ONNX model (``POST /v1/architectures``); returns the architecture, new or
        the stored one with the same computation graph (``created`` says which)."""
        params = {k: v for k, v in (("name", name), ("family", family), ("source", source)) if v}
        response = self._request(
            "POST", "/v1/architectures", params=params, data=_onnx_bytes(path),
            headers={"Content-Type": "application/octet-stream"})
        architecture = response.json()
        architecture["created"] = response.status_code == 201
        return architecture

    def nb201(self, cell: int | str) -> dict[str, Any]:
        """Every published figure of a NAS-Bench-201 cell, by index (0–15624) or arch string
        (``GET /v1/benchmarks/nb201/{cell}``)."""
        return self._request("GET", "/v1/benchmarks/nb201/" + quote(str(cell), safe="")).json()

    def pareto(self, dataset: str, x: str = "params", metric: str = "acc",
               benchmark: str | None = None, split: str | None = None,
               epoch: int | None = None) -> pd.DataFrame:
        """The models no other beats on both accuracy and cost ``x`` (``params``, ``macs`` or
        ``latency``), by increasing cost (``GET /v1/stats/pareto``): columns ``nn,
        architecture_id, x, y``; ``attrs["points"]`` is how many models were compared."""
        params = {k: v for k, v in (("dataset", dataset), ("x", x), ("metric", metric),
                                    ("benchmark", benchmark), ("split", split),
                                    ("epoch", epoch)) if v is not None}
        answer = self._request("GET", "/v1/stats/pareto", params=params).json()
        frame = pd.DataFrame(answer["front"], columns=["nn", "architecture_id", "x", "y"])
        frame.attrs.update(x=answer["x"], y=answer["y"], points=answer["points"])
        return frame

    def text(self, architecture_id: int, variant: str = "chain_slim",
             scalars: bool = False) -> str:
        """A stored architecture as text for a language model
        (``GET /v1/architectures/{id}/text``): ONNX-Net's ``chain_slim`` or ``cg``, …"""
        params = {"variant": variant}
        if scalars:
            params["scalars"] = "true"
        return self._request("GET", f"/v1/architectures/{architecture_id}/text",
                             params=params).text
