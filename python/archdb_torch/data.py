# SPDX-License-Identifier: Apache-2.0
"""Training-set files written by `archdb export-training-set` (src/predict/export.rs) and
batches of their graphs, per node, on any device."""

import json

import torch
from safetensors import safe_open
from safetensors.numpy import load_file

SET_FORMAT = "archdb-training-set"
SET_VERSION = "1"


class TrainingSet:
    """Every tensor of a set file (numpy) plus its metadata (parsed JSON)."""

    def __init__(self, path):
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
        if meta.get("format") != SET_FORMAT:
            raise ValueError(f"{path}: not an {SET_FORMAT} file")
        if meta.get("version") != SET_VERSION:
            raise ValueError(f"{path}: set version {meta.get('version')}, this reads {SET_VERSION}")
        t = load_file(path)
        self.labels = t["labels"]
        self.numeric = t["numeric"]
        self.edges = t["edges"].reshape(-1, 2)
        self.node_offsets = t["node_offsets"]
        self.graph_features = t["graph_features"]
        self.flops = t["flops"]
        self.accuracy = t["accuracy"]
        self.spectral = t["spectral"]
        self.ids = t["architecture_ids"]
        self.vocabulary = json.loads(meta["vocabulary"])
        self.features = json.loads(meta["features"])
        self.numeric_features = json.loads(meta["numeric_features"])
        self.target = json.loads(meta["target"])
        self.train_config = json.loads(meta["train_config"])

    def __len__(self):
        return len(self.flops)


class Batcher:
    """A set's graphs on `device`; `batch(idx)` assembles any subset as one disjoint graph."""

    def __init__(self, data, device):
        self.device = device
        offsets = torch.as_tensor(data.node_offsets, dtype=torch.long)
        edges = torch.as_tensor(data.edges, dtype=torch.long)
        # Edges are stored graph after graph: graph g owns edge_offsets[g]..edge_offsets[g+1].
        edge_graph = torch.searchsorted(offsets, edges[:, 0].contiguous(), right=True) - 1
        edge_counts = torch.bincount(edge_graph, minlength=len(data))
        self.node_start = offsets[:-1].to(device)
        self.node_count = (offsets[1:] - offsets[:-1]).to(device)
        self.edge_start = torch.cat([torch.zeros(1, dtype=torch.long), edge_counts.cumsum(0)])[:-1].to(device)
        self.edge_count = edge_counts.to(device)
        self.labels = torch.as_tensor(data.labels, dtype=torch.long).to(device)
        self.numeric = torch.as_tensor(data.numeric).to(device)
        self.edges = edges.to(device)
        self.graph_features = torch.as_tensor(data.graph_features).to(device)

    @staticmethod
    def _ranges(starts, counts):
        """Concatenated `start .. start + count` ranges, and each element's range."""
        owner = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
        begin = torch.cumsum(counts, 0) - counts
        position = torch.arange(int(counts.sum()), device=counts.device) - begin[owner]
        return starts[owner] + position, owner, begin

    def batch(self, idx):
        """Graphs `idx` (a sequence of set positions) as a dict of tensors for `Member`."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        nodes, node_graph, new_start = self._ranges(self.node_start[idx], self.node_count[idx])
        edge_rows, edge_graph, _ = self._ranges(self.edge_start[idx], self.edge_count[idx])
        shift = (self.node_start[idx] - new_start)[edge_graph]
        edges = self.edges[edge_rows] - shift[:, None]
        return {
            "labels": self.labels[nodes],
            "numeric": self.numeric[nodes],
            "src": edges[:, 0],
            "dst": edges[:, 1],
            "node_graph": node_graph,
            "counts": self.node_count[idx],
            "graph_features": self.graph_features[idx],
        }


def chunks(seq, size):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def as_numpy(t):
    return t.detach().to("cpu").numpy()


