"""archdb's MCP server through the official MCP Python SDK (PyPI `mcp`) as the client.

Run by tests/mcp/main.rs (`cargo test --test mcp`), which starts two `archdb serve` processes on
one fresh database (ARCHDB_URL: seeded with the NB201 test cells and the bundled predictor;
ARCHDB_GUARDED_URL: the same data behind ARCHDB_TOKEN) and names the binary (ARCHDB_BIN) and
the database (DATABASE_URL) for `archdb mcp` over stdio.

Over both transports it lists the tools, checks their schemas, calls every tool and compares the
structured content with the REST answer for the same input; over HTTP it checks the token rule.
Any failure raises; the script prints one line per check.
"""

import asyncio
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from jsonschema import Draft202012Validator
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ["ARCHDB_URL"]
GUARDED = os.environ["ARCHDB_GUARDED_URL"]
TOKEN = os.environ["ARCHDB_TOKEN"]

TOOLS = {
    "search_architectures", "get_architecture", "add_architecture", "predict_accuracy",
    "query_results", "nb201_lookup", "similar_architectures", "pareto_front",
    "compute_calibration", "list_benchmarks", "compare_architectures", "rank_candidates",
}
CELL_1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"  # cell 1
CALIBRATION = {"probs": [[0.25, 0.2, 0.55], [0.55, 0.05, 0.4], [0.1, 0.3, 0.6], [0.9, 0.05, 0.05]],
               "labels": [0, 1, 2, 0], "bins": [3, 15]}


def rest(method, path, body=None, base=BASE, token=None, content_type="application/json"):
    """(status, JSON) of one REST request."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", content_type)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def query(params):
    return urllib.parse.urlencode(params, doseq=True)


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok   {name}")


def wait_until_seeded():
    """The servers seed in the background: wait for the NB201 cells and the bundled predictor."""
    deadline = time.time() + 300
    while time.time() < deadline:
        status, _ = rest("POST", "/v1/predictions", {"nb201": [0]})
        status_cell, _ = rest("GET", "/v1/benchmarks/nb201/6111")
        guarded, _ = rest("POST", "/v1/predictions", {"nb201": [0]}, base=GUARDED, token=TOKEN)
        if status == status_cell == guarded == 200:
            return
        time.sleep(1)
    raise AssertionError("the servers did not load the NB201 cells and the bundled predictor in 300 s")


def stdio_client():
    return Client(StdioServerParameters(
        command=os.environ["ARCHDB_BIN"],
        args=["mcp", "--no-seed"],
        env={"DATABASE_URL": os.environ["DATABASE_URL"], "RUST_LOG": "warn"},
    ))


def http_client(base, token=None):
    headers = {"authorization": f"Bearer {token}"} if token else None
    return Client(streamable_http_client(base + "/mcp", http_client=create_mcp_http_client(headers=headers)))


def text_of(result):
    return "\n".join(block.text for block in result.content if getattr(block, "text", None))


async def call(client, name, args):
    """A successful call's structured content (the SDK validates it against the outputSchema)."""
    result = await client.call_tool(name, args)
    assert not result.is_error, f"{name}({args}) failed: {text_of(result)}"
    assert text_of(result), f"{name} has no text rendering"
    return result.structured_content


async def refused(client, name, args):
    """A call that must fail as a tool error; returns its text."""
    result = await client.call_tool(name, args)
    assert result.is_error, f"{name}({args}) should fail but answered {result.structured_content}"
    text = text_of(result)
    assert "How to fix:" in text, text
    return text


async def check_tools(client, label):
    listed = (await client.list_tools()).tools
    by_name = {t.name: t for t in listed}
    check(f"{label}: tools/list names the 12 tools", set(by_name) == TOOLS, sorted(by_name))
    for tool in listed:
        Draft202012Validator.check_schema(tool.input_schema)
        Draft202012Validator.check_schema(tool.output_schema)
        assert tool.input_schema["type"] == "object" and tool.output_schema["type"] == "object", tool.name
        assert len(tool.description) > 80, f"{tool.name} needs a description for a model"
    check(f"{label}: every input and output schema is a valid JSON Schema object", True)
    props = {t.name: set(t.input_schema.get("properties", {})) for t in listed}
    check(f"{label}: inputs are the REST names", props["predict_accuracy"] == {
        "architecture_ids", "nb201", "onnx_base64", "targets", "nearest"}
        and props["add_architecture"] == {"onnx_base64", "name", "family", "source"}
        and props["nb201_lookup"] == {"cell"} and props["get_architecture"] >= {"id"}
        and props["similar_architectures"] == {"id", "k", "predictor_id"}
        and {"benchmark", "dataset", "metric", "nn", "max_rows", "only_best_accuracy", "unique_nn"} <= props["query_results"]
        and "format" not in props["query_results"], props)
    annotations = by_name["add_architecture"].annotations
    check(f"{label}: only add_architecture writes", annotations.read_only_hint is False and all(
        by_name[n].annotations.read_only_hint for n in TOOLS - {"add_architecture"}))


async def check_calls(client, label):
    same = lambda name, got, want: check(f"{label}: {name} = REST", got == want, f"\nMCP  {got}\nREST {want}")

    _, benchmarks = rest("GET", "/v1/benchmarks")
    same("list_benchmarks", await call(client, "list_benchmarks", {}), {"result": benchmarks})

    args = {"sort": "-params", "limit": 5, "family": "nb201"}
    page = await call(client, "search_architectures", args)
    same("search_architectures", page, rest("GET", "/v1/architectures?" + query(args))[1])
    check(f"{label}: search_architectures pages with next_cursor", len(page["items"]) == 5 and page["next_cursor"])
    default_page = await call(client, "search_architectures", {})
    check(f"{label}: search_architectures defaults to 10 rows", len(default_page["items"]) == 10)

    _, cell = rest("GET", "/v1/benchmarks/nb201/6111")
    same("nb201_lookup by index", await call(client, "nb201_lookup", {"cell": 6111}), cell)
    _, cell1 = rest("GET", "/v1/benchmarks/nb201/" + urllib.parse.quote(CELL_1, safe=""))
    check(f"{label}: REST knows the cell by arch string", cell1["index"] == 1, cell1)
    same("nb201_lookup by arch string", await call(client, "nb201_lookup", {"cell": CELL_1}), cell1)

    arch_id = cell["architecture_id"]
    result = await client.call_tool("get_architecture", {"id": arch_id})
    same("get_architecture", result.structured_content, rest("GET", f"/v1/architectures/{arch_id}")[1])
    check(f"{label}: get_architecture text names params and ops", "params" in text_of(result) and "Conv" in text_of(result),
          text_of(result))

    body = {"nb201": [6111, CELL_1], "architecture_ids": [arch_id]}
    same("predict_accuracy", await call(client, "predict_accuracy", body), rest("POST", "/v1/predictions", body)[1])
    same("predict_accuracy with nearest", await call(client, "predict_accuracy", {**body, "nearest": 2}),
         rest("POST", "/v1/predictions?nearest=2", body)[1])

    args = {"benchmark": ["nb201"], "dataset": ["cifar10"], "metric": ["acc"], "max_rows": 5}
    result = await client.call_tool("query_results", args)
    same("query_results", result.structured_content, {"result": rest("GET", "/v1/results?" + query(args))[1]})
    total = len(rest("GET", "/v1/results?" + query({k: v for k, v in args.items() if k != "max_rows"}))[1])
    check(f"{label}: query_results says how many rows were left out",
          f"5 of {total} matching rows ({total - 5} left out" in text_of(result), text_of(result))
    rows = (await call(client, "query_results", {"benchmark": "nb201"}))["result"]
    check(f"{label}: query_results defaults to 20 rows", len(rows) == 20, len(rows))

    _, similar = rest("GET", f"/v1/architectures/{arch_id}/similar?k=3")
    same("similar_architectures", await call(client, "similar_architectures", {"id": arch_id, "k": 3}), similar)

    args = {"dataset": "cifar10", "x": "params", "benchmark": "nb201", "split": "test", "epoch": 200}
    front = await call(client, "pareto_front", args)
    same("pareto_front", front, rest("GET", "/v1/stats/pareto?" + query(args))[1])
    check(f"{label}: pareto_front has a front", len(front["front"]) >= 2 and front["points"] >= 40, front)

    same("compute_calibration", await call(client, "compute_calibration", CALIBRATION),
         rest("POST", "/v1/calibration/compute", CALIBRATION)[1])

    # add_architecture: the same bytes posted to REST afterwards answer the same architecture.
    onnx = (ROOT / "tests/fixtures/onnx-samples/resnet18.legacy.onnx").read_bytes()
    added = await call(client, "add_architecture", {"onnx_base64": base64.b64encode(onnx).decode(), "name": "resnet18",
                                                     "family": "resnet", "source": "torchvision"})
    status, again = rest("POST", "/v1/architectures?name=resnet18&family=resnet&source=torchvision", onnx,
                         content_type="application/octet-stream")
    check(f"{label}: add_architecture stored the model REST finds", status == 200 and added == again
          and added["params"] == 11_680_872, f"{status} {added} {again}")

    # compare_architectures: REST figures and REST predictions.
    ids = [arch_id, cell1["architecture_id"]]
    compared = await call(client, "compare_architectures", {"ids": ids})
    _, predicted = rest("POST", "/v1/predictions?nearest=0", {"architecture_ids": ids})
    for row, i in zip(compared["architectures"], ids):
        _, arch = rest("GET", f"/v1/architectures/{i}")
        assert (row["id"], row["params"], row["macs"]) == (i, arch["params"], arch["macs"]), row
    want_acc = [p["accuracy"] for p in predicted["results"][0]["predictions"]]
    check(f"{label}: compare_architectures has REST figures and predictions",
          [r["predicted"]["accuracy"] for r in compared["architectures"]] == want_acc
          and compared["architectures"][1]["params_ratio"] == cell1["params"] / cell["params"], compared)

    # rank_candidates: the REST predictions, filtered by the budget and sorted.
    cells = list(range(40))
    _, answer = rest("POST", "/v1/predictions?nearest=0", {"nb201": cells})
    budget = sorted(p["params"] for p in answer["results"][0]["predictions"])[25]
    ranked = await call(client, "rank_candidates", {"nb201": cells, "max_params": budget, "top_k": 5})
    within = sorted((p for p in answer["results"][0]["predictions"] if p["params"] <= budget),
                    key=lambda p: -p["accuracy"])
    check(f"{label}: rank_candidates = REST predictions under the budget, best first",
          [(r["nb201"], r["accuracy"]) for r in ranked["ranked"]] == [(p["input"], p["accuracy"]) for p in within[:5]]
          and ranked["within_budget"] == len(within) and ranked["omitted"] == len(within) - 5
          and ranked["candidates"] == 40 and 5 < len(within) < 40, ranked)


async def check_errors(client, label):
    text = await refused(client, "get_architecture", {"id": 987654321})
    check(f"{label}: unknown id is a tool error with the problem and a fix",
          "urn:archdb:problem:not-found" in text and "search_architectures" in text, text)
    text = await refused(client, "nb201_lookup", {"cell": 99999})
    check(f"{label}: unknown NB201 cell is a tool error", "404" in text and "0–15624" in text, text)
    text = await refused(client, "query_results", {"datset": "cifar10"})
    check(f"{label}: a misspelt argument is refused, naming the right ones", "`datset`" in text and "dataset" in text, text)
    text = await refused(client, "add_architecture", {"onnx_base64": "not base64!"})
    check(f"{label}: bad base64 is refused", "base64" in text, text)
    text = await refused(client, "add_architecture", {"onnx_base64": base64.b64encode(b"not onnx").decode()})
    check(f"{label}: a file that is not ONNX gets the REST problem", "invalid-onnx" in text, text)
    text = await refused(client, "search_architectures", {"sort": "colour"})
    check(
        f"{label}: a REST 400 comes back with its detail",
        "400" in text and "`colour`" in text and "-params" in text,
        text,
    )


async def check_token_rule():
    count = lambda: len(rest("GET", "/v1/architectures?limit=1000")[1]["items"])
    before = count()
    onnx = (ROOT / "tests/fixtures/onnx-samples/squeezenet1_0.full.onnx").read_bytes()
    encoded = base64.b64encode(onnx).decode()
    async with http_client(GUARDED) as client:
        await check_tools(client, "guarded, no token")
        cell = await call(client, "nb201_lookup", {"cell": 6111})
        check("guarded, no token: reads answer", cell["index"] == 6111)
        text = await refused(client, "add_architecture", {"onnx_base64": encoded, "name": "squeezenet"})
        check("guarded, no token: add_architecture is refused with 401 and how to send the token",
              "401" in text and "Authorization: Bearer" in text, text)
        check("guarded, no token: nothing was written", count() == before)
        # Predictions are compute-only: like POST /v1/predictions they need the read scope,
        # which is open when the server has only the admin token.
        answer = await call(client, "predict_accuracy", {"nb201": [0]})
        status, body = rest("POST", "/v1/predictions", {"nb201": [0]}, base=GUARDED)
        check("guarded, no token: compute-only predict_accuracy answers as POST /v1/predictions does",
              status == 200 and answer == body, f"{status}")
    async with http_client(GUARDED, token="wrong") as client:
        text = await refused(client, "add_architecture", {"onnx_base64": encoded})
        check("guarded, wrong token: refused", "401" in text, text)
    async with http_client(GUARDED, token=TOKEN) as client:
        result = await client.call_tool("add_architecture", {"onnx_base64": encoded, "name": "squeezenet"})
        check("guarded, token: add_architecture stores the model",
              not result.is_error and "Stored as a new architecture" in text_of(result) and count() == before + 1,
              text_of(result))


async def main():
    wait_until_seeded()
    print("ok   servers seeded")
    async with stdio_client() as client:
        await check_tools(client, "stdio")
        await check_calls(client, "stdio")
        await check_errors(client, "stdio")
    async with http_client(BASE) as client:
        await check_tools(client, "http")
        await check_calls(client, "http")
        await check_errors(client, "http")
    await check_token_rule()
    print("all MCP checks passed")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"FAIL {e}", file=sys.stderr)
        sys.exit(1)
