"""schemathesis hooks for .ci/schemathesis.sh: realistic bodies for what a JSON Schema cannot
say. Only bodies generated as valid (positive) are replaced, so negative cases stay as generated.

* An ONNX upload is a protobuf, not any bytes: one of the repository's sample models.
* Predictions need N rows of K probabilities summing to 1 and N labels in 0..K: made here, as
  JSON or as an .npz file.
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

ONNX = sorted(pathlib.Path(os.environ["ARCHDB_ONNX_DIR"]).glob("*.onnx"))
PREDICTIONS = {"POST /v1/calibration/compute", "PUT /v1/architectures/{id}/calibration/{dataset}"}


def _positive_body(case) -> bool:
    meta = case.meta
    if meta is None:
        return True
    body = meta.components.get(ParameterLocation.BODY)
    # The coverage phase marks a case negative with its body component still positive.
    return meta.generation.mode == GenerationMode.POSITIVE and (
        body is None or body.mode == GenerationMode.POSITIVE)


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


@schemathesis.hook
def map_case(context, case):
    op = f"{case.operation.method.upper()} {case.operation.path}"
    if not _positive_body(case) or case.body is None:
        return case
    rng = random.Random(repr(case.body)[:200])
    if op == "POST /v1/architectures":
        onnx = rng.choice(ONNX).read_bytes()
        if case.media_type == "multipart/form-data":
            case.body = {**(case.body if isinstance(case.body, dict) else {}), "file": onnx}
        else:
            case.body = onnx
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
