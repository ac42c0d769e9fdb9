"""archdb_client against a live ``archdb serve`` (see conftest.py)."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
import requests

from archdb_client import LEMUR_COLUMNS, NN_STAT_COLUMNS, ArchdbError, Client

from conftest import REPO

RESNET18 = REPO / "tests" / "fixtures" / "onnx-samples" / "resnet18.legacy.onnx"
CELL_6111 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
             "nor_conv_3x3~1|nor_conv_1x1~2|")


@pytest.fixture(scope="session")
def client(server):
    return Client(server.url)


def _normal(value):
    """One cell of either encoding as a comparable Python value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if isinstance(value, str):
        if value in ("true", "false"):
            return value == "true"
        if value[:1] in "{[":
            return json.loads(value)
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


# (data() arguments, the same query as /v1/results parameters)
LEMUR_QUERIES = [
    (dict(benchmark="lemur", task="img-classification", dataset="cifar-10", metric="acc",
          max_rows=60),
     [("benchmark", "lemur"), ("task", "img-classification"), ("dataset", "cifar-10"),
      ("metric", "acc"), ("max_rows", 60)]),
    (dict(benchmark="lemur", dataset="cifar-10", only_best_accuracy=True, epoch=(1, 2)),
     [("benchmark", "lemur"), ("dataset", "cifar-10"), ("epoch", 1), ("epoch", 2),
      ("only_best_accuracy", "true")]),
    (dict(benchmark="lemur", unique_nn=True),
     [("benchmark", "lemur"), ("unique_nn", "true")]),
    (dict(benchmark="lemur", nn_prefixes=("rag-", "Alex"), max_rows=40),
     [("benchmark", "lemur"), ("nn_prefix", "rag-"), ("nn_prefix", "Alex"), ("max_rows", 40)]),
    (dict(benchmark="lemur", nn="AlexNet", include_nn_stats=True, max_rows=25),
     [("benchmark", "lemur"), ("nn", "AlexNet"), ("include_nn_stats", "true"),
      ("max_rows", 25)]),
]


@pytest.mark.parametrize("kwargs,params", LEMUR_QUERIES)
def test_data_equals_the_rest_csv(client, server, kwargs, params):
    frame = client.data(**kwargs)
    want_columns = LEMUR_COLUMNS + (NN_STAT_COLUMNS if kwargs.get("include_nn_stats") else [])
    assert list(frame.columns) == want_columns
    assert len(frame) > 0
    response = requests.get(server.url + "/v1/results",
                            params=params + [("format", "csv"), ("include_code", "true")])
    response.raise_for_status()
    csv = pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False)
    assert len(csv) == len(frame)
    for column in want_columns:
        ours = [_normal(v) for v in frame[column]]
        theirs = [_normal(v) for v in csv[column]]
        assert ours == theirs, column


def test_data_filters_like_lemur(client):
    best = client.data(benchmark="lemur", dataset="cifar-10", only_best_accuracy=True)
    everything = client.data(benchmark="lemur", dataset="cifar-10")
    assert 0 < len(best) < len(everything)
    grouped = everything.groupby(["task", "dataset", "metric", "nn", "epoch"])["accuracy"].max()
    for _, row in best.head(50).iterrows():
        key = (row.task, row.dataset, row.metric, row.nn, row.epoch)
        assert row.accuracy == grouped[key]
    assert isinstance(best.iloc[0].prm, dict)
    assert (client.data(benchmark="lemur", max_rows=7).shape[0]) == 7
    with pytest.raises(NotImplementedError):
        client.data(sql=object())
    with pytest.raises(ArchdbError) as bad:
        client.data(epoch="last")
    assert bad.value.status == 400 and "epoch" in bad.value.detail


def test_nb201_by_index_and_arch_string(client):
    by_index = client.nb201(6111)
    by_arch = client.nb201(CELL_6111)
    assert by_index == by_arch
    assert CELL_6111 in json.dumps(by_index)
    assert "94.37" in json.dumps(by_index)
    with pytest.raises(ArchdbError) as missing:
        client.nb201(15625)
    assert missing.value.status in (400, 404)


def test_pareto_front(client):
    front = client.pareto(dataset="cifar10", benchmark="nb201", split="test", epoch=200)
    assert list(front.columns) == ["nn", "architecture_id", "x", "y"]
    assert 0 < len(front) <= front.attrs["points"] == 43
    assert front.x.is_monotonic_increasing and front.y.is_monotonic_increasing


def test_upload_then_text(client):
    first = client.upload(RESNET18, name="resnet18", family="resnet")
    again = client.upload(str(RESNET18))
    assert again["id"] == first["id"] and not again["created"]
    assert first["params"] == 11_680_872
    text = client.text(first["id"])
    assert text.startswith("Identity(Param[512]) --> Value1:512\n")
    assert text.endswith("--> Out")
    cg = client.text(first["id"], variant="cg")
    assert len(cg.splitlines()) == first["num_nodes"]


def test_predict_sends_the_target(client, server):
    server.wait_for_predictor()
    answer = client.predict(RESNET18, dataset="cifar10")
    (result,) = answer["results"]
    assert result["target"]["dataset"] == "cifar10"
    (prediction,) = result["predictions"]
    assert prediction["params"] == 11_680_872
    assert isinstance(prediction["accuracy"], float)
    # The same model as bytes, twice: two predictions.
    two = client.predict([RESNET18.read_bytes(), RESNET18], dataset="cifar10")
    assert len(two["results"][0]["predictions"]) == 2
    # Epoch and hyperparameters: answered once the server knows them (the contract of
    # POST /v1/predictions being extended); a server that does not is refusing them by name.
    try:
        answer = client.predict(RESNET18, dataset="cifar10", epoch=200, lr=0.1, batch=64)
    except ArchdbError as refused:
        assert refused.status in (400, 422)
        assert "unknown field `epoch`" in refused.detail, refused.detail
    else:
        assert answer["results"][0]["predictions"][0]["accuracy"] > 0


def test_the_token_comes_from_the_argument_or_the_environment(token_server, monkeypatch):
    monkeypatch.delenv("ARCHDB_API_TOKEN", raising=False)
    anonymous = Client(token_server.url)
    with pytest.raises(ArchdbError) as refused:
        anonymous.upload(RESNET18)
    assert refused.value.status == 401
    assert anonymous.data(max_rows=1).empty  # reads need no token
    assert Client(token_server.url, token=token_server.token).upload(RESNET18)["created"]
    monkeypatch.setenv("ARCHDB_API_TOKEN", token_server.token)
    assert not Client(token_server.url).upload(RESNET18)["created"]
