"""schemathesis hooks for .ci/schemathesis.sh: realistic bodies for what a JSON Schema cannot
say. Only bodies generated as valid (positive) are replaced, so negative cases stay as generated.

* An ONNX upload is a protobuf, not any bytes: one of the repository's sample models.
* Predictions need N rows of K probabilities summing to 1 and N labels in 0..K: made here, as
  JSON or as an .npz file.
* A prediction is asked for NB201 cells (an index 0..15624) with the default targets: a target
  must name an active predictor, which the database decides.

Query rules between parameters, stated in their descriptions, are applied to valid cases:
`/v1/calibration/analysis` kinds `bins`, `metrics` and `accuracy` need `dataset` (`bins` a binned
metric), `group_by=op` needs `op`; `/v1/lemur/similar` asks at most `n × overfetch` = 100000 rows.
"""
import io
import os
import pathlib
import random
import struct
import zipfile

import schemathesis
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario

# The coverage phase's scenarios that make a valid case (the enum lists them first).
_SCENARIOS = list(CoverageScenario)
VALID_SCENARIOS = set(_SCENARIOS[:_SCENARIOS.index(CoverageScenario.VALUE_ABOVE_MAXIMUM)])

ONNX = sorted(pathlib.Path(os.environ["ARCHDB_ONNX_DIR"]).glob("*.onnx"))
PREDICTIONS = {"POST /v1/calibration/compute", "PUT /v1/architectures/{id}/calibration/{dataset}"}


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


@schemathesis.hook
def map_case(context, case):
    op = f"{case.operation.method.upper()} {case.operation.path}"
    _query_rules(op, case)
    if not _positive_body(case) or case.body is None:
        return case
    rng = random.Random(repr(case.body)[:200])
    if op == "POST /v1/architectures":
        onnx = rng.choice(ONNX).read_bytes()
        if case.media_type == "multipart/form-data":
            form = case.body if isinstance(case.body, dict) else {}
            # A form cannot carry null: such a case is schemathesis' negative one, left as is.
            if any(v is None for v in form.values()):
                return case
            case.body = {**form, "file": onnx}
        else:
            case.body = onnx
    elif op == "POST /v1/predictions":
        if case.media_type == "application/json":
            case.body = {"nb201": [rng.randrange(15625) for _ in range(rng.randint(1, 5))]}
        else:
            case.body = rng.choice(ONNX).read_bytes()
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
