"""schemathesis hooks for .ci/schemathesis.sh: realistic bodies for what a JSON Schema cannot
say. Only bodies generated as valid (positive) are replaced, so negative cases stay as generated.

* An ONNX upload is a protobuf, not any bytes: `application/octet-stream` bodies and file parts
  (the document's form `encoding` names that type) are drawn from the repository's sample
  models as they are generated. A map_case hook cannot place them: schemathesis revalidates a
  body the hook changed, cannot validate bytes, and would then count the case as invalid.
* Predictions need N rows of K probabilities summing to 1 and N labels in 0..K: made here, as
  JSON or as an .npz file (replacing the generated ONNX).
* A prediction is asked for NB201 cells (an index 0..15624) with the default targets: a target
  must name an active predictor, which the database decides.
* A predictor is trained or fine-tuned on a target with measured architectures, which the
  database decides: the hook asks the server for a result row linked to an architecture and
  names its figure. Once the stateful phase has deleted every such architecture there is none,
  and a valid training request cannot be made: those cases are skipped.

A form field is text on the wire: a negative multipart case whose only change is the type of a
text field (an object, a number, `true`) sends that value's text, which is a valid string.
schemathesis reads such a form back as sent to excuse it, but not when a file part (bytes) is in
the form; those cases are skipped.

Query rules between parameters, stated in their descriptions, are applied to valid cases:
`/v1/calibration/analysis` kinds `bins`, `metrics` and `accuracy` need `dataset` (`bins` a binned
metric), `group_by=op` needs `op`; `/v1/lemur/similar` asks at most `n × overfetch` = 100000 rows.
"""
import io
import json
import os
import pathlib
import random
import struct
import urllib.request
import zipfile

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.mutations import OperatorKind
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario

# The coverage phase's scenarios that make a valid case (the enum lists them first).
_SCENARIOS = list(CoverageScenario)
VALID_SCENARIOS = set(_SCENARIOS[:_SCENARIOS.index(CoverageScenario.VALUE_ABOVE_MAXIMUM)])

ONNX = sorted(pathlib.Path(os.environ["ARCHDB_ONNX_DIR"]).glob("*.onnx"))
PREDICTIONS = {"POST /v1/calibration/compute", "PUT /v1/architectures/{id}/calibration/{dataset}"}
TRAINING = {"POST /v1/predictors", "POST /v1/predictors/{id}/finetune"}

schemathesis.openapi.media_type(
    "application/octet-stream", st.sampled_from([path.read_bytes() for path in ONNX]))


def _positive_body(case) -> bool:
    meta = case.meta
    if meta is None:
        return False
    body = meta.components.get(ParameterLocation.BODY)
    return _valid_scenario(meta) and meta.generation.mode == GenerationMode.POSITIVE and (
        body is None or body.mode == GenerationMode.POSITIVE)


def _valid_scenario(meta) -> bool:
    """The coverage phase can mark a case positive whose scenario breaks the schema."""
    data = meta.phase.data
    return not isinstance(data, CoveragePhaseData) or data.scenario in VALID_SCENARIOS


def _npy(values, shape, descr, fmt) -> bytes:
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join(f"{d}, " for d in shape))
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
            + struct.pack("<" + fmt * len(values), *values))


def _predictions(rng: random.Random):
    n, k = rng.randint(2, 30), rng.randint(2, 6)
    rows = []
    for _ in range(n):
        w = [rng.random() + 1e-3 for _ in range(k)]
        rows.append([x / sum(w) for x in w])
    return rows, [rng.randrange(k) for _ in range(n)]


BINNED = {"ece", "ece_em", "cwce", "cwce_em", "mce", "rmsce"}


def _query_rules(op, case):
    q = case.query
    if not isinstance(q, dict) or not _positive_query(case):
        return
    if op == "GET /v1/calibration/analysis":
        if q.get("kind") in ("bins", "metrics", "accuracy") and "dataset" not in q:
            q["dataset"] = "cifar10"
        if q.get("kind") == "bins" and q.get("metric", "ece") not in BINNED:
            q["metric"] = "ece"
        if q.get("group_by") == "op" and "op" not in q:
            q["op"] = "Conv"
    elif op == "GET /v1/lemur/similar":
        n, over = q.get("n", 10), q.get("overfetch", 10)
        if isinstance(n, int) and isinstance(over, int) and n * over > 100_000:
            q["overfetch"] = max(1, 100_000 // n)


def _positive_query(case) -> bool:
    meta = case.meta
    if meta is None:
        return False
    query = meta.components.get(ParameterLocation.QUERY)
    return _valid_scenario(meta) and meta.generation.mode == GenerationMode.POSITIVE and (
        query is None or query.mode == GenerationMode.POSITIVE)


def _measured_target():
    """A figure with measured architectures (a result row with a value, linked to an
    architecture), or None."""
    url = (os.environ["ARCHDB_SCHEMATHESIS_URL"] + "/v1/results?require=architecture_id"
           "&require=accuracy&max_rows=1")
    request = urllib.request.Request(
        url, headers={"Authorization": "Bearer " + os.environ["ARCHDB_SCHEMATHESIS_TOKEN"]})
    with urllib.request.urlopen(request, timeout=60) as response:
        rows = json.load(response)
    if not rows:
        return None
    row = rows[0]
    return {"benchmark": row["benchmark"], "dataset": row["dataset"], "metric": row["metric"],
            "epoch": row["epoch"]}


# The target `filter_case` found for the case `map_case` completes next.
_target = None


def _only_text_field_types_changed(case) -> bool:
    """A negative form case whose every mutation changes the type of a (non-file) form field."""
    meta = case.meta
    if meta is None or case.media_type != "multipart/form-data" or meta.generation.mode.is_positive:
        return False
    if any(component.mode.is_negative for location, component in meta.components.items()
           if location != ParameterLocation.BODY):
        return False
    mutations = getattr(meta.phase.data, "mutations", None)
    return bool(mutations) and all(
        m.operator == OperatorKind.CHANGE_TYPE
        and m.parameter_location == ParameterLocation.BODY
        and m.schema_pointer.startswith("/properties/")
        and m.schema_pointer.split("/")[2] != "file"
        for m in mutations)


@schemathesis.hook
def filter_case(context, case):
    global _target
    op = f"{case.operation.method.upper()} {case.operation.path}"
    if _only_text_field_types_changed(case):
        return False
    if op in TRAINING and _positive_body(case) and isinstance(case.body, dict):
        _target = _measured_target()
        return _target is not None
    return True


@schemathesis.hook
def map_case(context, case):
    op = f"{case.operation.method.upper()} {case.operation.path}"
    _query_rules(op, case)
    if not _positive_body(case) or case.body is None:
        return case
    rng = random.Random(repr(case.body)[:200])
    if op == "POST /v1/predictions" and case.media_type == "application/json":
        case.body = {"nb201": [rng.randrange(15625) for _ in range(rng.randint(1, 5))]}
    elif op in TRAINING and isinstance(case.body, dict) and _target is not None:
        case.body = {**case.body, "target": dict(_target)}
    elif op in PREDICTIONS:
        probs, labels = _predictions(rng)
        if case.media_type == "application/json":
            case.body = {"probs": probs, "labels": labels}
        else:
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w") as z:
                flat = [x for row in probs for x in row]
                z.writestr("probs.npy", _npy(flat, (len(probs), len(probs[0])), "<f8", "d"))
                z.writestr("labels.npy", _npy(labels, (len(labels),), "<i8", "q"))
            case.body = out.getvalue()
    return case
