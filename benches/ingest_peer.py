#!/usr/bin/env python3
"""The Python peer of archdb's bulk ingest (issue #12): what a researcher does without archdb.

For every ONNX file: ``onnx.load`` + ``onnx.shape_inference.infer_shapes`` + a networkx
``DiGraph`` with one vertex per node and an edge from the node producing a tensor to every node
consuming it. Nothing is stored. Prints one JSON line: files, nodes, edges, seconds, files/s.

Usage: ingest_peer.py FILE_OR_DIR... (directories are walked for ``*.onnx``).
Run by benches/ingest.sh next to archdb's batch endpoint; its venv comes from .ci/peer-venv.sh.
"""

import json
import os
import sys
import time

import networkx as nx
import onnx
import onnx.shape_inference


def onnx_files(args):
    for arg in args:
        if os.path.isdir(arg):
            for root, _, names in sorted(os.walk(arg)):
                for name in sorted(names):
                    if name.endswith(".onnx"):
                        yield os.path.join(root, name)
        else:
            yield arg


def to_graph(model):
    graph = nx.DiGraph()
    producer = {}
    for i, node in enumerate(model.graph.node):
        graph.add_node(i, op_type=node.op_type, name=node.name)
        for out in node.output:
            producer[out] = i
    for i, node in enumerate(model.graph.node):
        for tensor in node.input:
            if tensor in producer:
                graph.add_edge(producer[tensor], i, tensor=tensor)
    return graph


def main():
    files = list(onnx_files(sys.argv[1:]))
    if not files:
        sys.exit("ingest_peer.py: no .onnx files given")
    nodes = edges = 0
    started = time.perf_counter()
    for path in files:
        # The fixtures are weight-stripped exports whose initializers point at external data
        # files that do not exist; the graph is all either tool reads.
        model = onnx.load(path, load_external_data=False)
        model = onnx.shape_inference.infer_shapes(model)
        graph = to_graph(model)
        nodes += graph.number_of_nodes()
        edges += graph.number_of_edges()
    seconds = time.perf_counter() - started
    print(json.dumps({
        "tool": "python-peer",
        "onnx": onnx.__version__,
        "networkx": nx.__version__,
        "files": len(files),
        "nodes": nodes,
        "edges": edges,
        "seconds": round(seconds, 4),
        "files_per_s": round(len(files) / seconds, 1),
    }))


if __name__ == "__main__":
    main()
