# SPDX-License-Identifier: Apache-2.0
"""archdb's predictor in PyTorch, per node (the definition archdb's deduplicated encoder is
tested equal to): members of a k-GNN encoder + fuzzy c-means centroids + one head per cluster,
the target transform, and the artifact format of src/predict/artifact.rs."""

import json
import math

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from .data import as_numpy, chunks

FORMAT = "archdb-predictor"
FORMAT_VERSION = 1
NUM_NUMERIC = 18
NUM_GRAPH = 3
PREDICT_CHUNK = 512


class TargetTransform:
    """GENNAPE's target transform with archdb's optional quantile scores (uniform or logistic);
    the same arithmetic as `TargetTransform` in src/predict/model.rs, in float64."""

    MAX_QUANTILES = 1001
    SCORES = ("z", "uniform", "logistic")

    def __init__(self, flops_transform, mean=0.0, std=1.0, scores="z", quantiles=()):
        if scores not in self.SCORES:
            raise ValueError(f"unknown target scores {scores!r}")
        self.flops_transform = bool(flops_transform)
        self.mean = float(mean)
        self.std = float(std)
        self.scores = scores
        self.quantiles = np.asarray(quantiles, dtype=np.float64)

    @classmethod
    def from_json(cls, j):
        return cls(
            j["flops_transform"], j["mean"], j["std"], j.get("scores", "z"), j.get("quantiles", [])
        )

    def to_json(self):
        return {
            "flops_transform": self.flops_transform,
            "mean": self.mean,
            "std": self.std,
            "scores": self.scores,
            "quantiles": [float(q) for q in self.quantiles],
        }

    @classmethod
    def fit(cls, accuracies, flops, flops_transform, scores):
        t = cls(flops_transform)
        raw = np.asarray(accuracies, np.float64) / t.divisor(np.asarray(flops, np.float64))
        n = max(len(raw), 1)
        t.mean = float(raw.sum() / n)
        variance = float(((raw - t.mean) ** 2).sum() / n)
        t.std = math.sqrt(variance) if variance > 0 else 1.0
        if scores != "z":
            z = np.sort((raw - t.mean) / t.std)
            k = min(len(z), cls.MAX_QUANTILES)
            picks = [(j * (len(z) - 1)) // (k - 1) if k > 1 else 0 for j in range(k)]
            knots = [float(z[p]) for p in picks]
            knots = [x for i, x in enumerate(knots) if i == 0 or x != knots[i - 1]]
            if len(knots) >= 2:
                t.quantiles = np.asarray(knots)
                t.scores = scores
        return t

    def divisor(self, flops):
        if self.flops_transform:
            return np.log10(np.asarray(flops, np.float64) / 1e9 + 1.0) + 1.0
        return np.ones_like(np.asarray(flops, np.float64))

    def _end_slope(self, top):
        q = self.quantiles
        span = max(len(q) // 20, 1)
        lo, hi = (q[-1 - span], q[-1]) if top else (q[0], q[span])
        return (hi - lo) / span

    def _score(self, position):
        last = len(self.quantiles) - 1
        if self.scores == "uniform":
            return math.sqrt(3.0) * (2.0 * position / last - 1.0)
        scale, n = math.sqrt(3.0) / math.pi, last + 1.0
        inside = np.clip(position, 0.0, last)
        p = (inside + 0.5) / n
        slope = scale / (n * p * (1.0 - p))
        return scale * np.log(p / (1.0 - p)) + (position - inside) * slope

    def _position(self, score):
        last = len(self.quantiles) - 1
        if self.scores == "uniform":
            return (score / math.sqrt(3.0) + 1.0) / 2.0 * last
        scale, n = math.sqrt(3.0) / math.pi, last + 1.0
        end = float(self._score(np.float64(last)))
        inside = np.clip(score, -end, end)
        p = 1.0 / (1.0 + np.exp(-inside / scale))
        slope = scale / (n * (0.5 / n) * (1.0 - 0.5 / n))
        return p * n - 0.5 + (score - inside) / slope

    def forward(self, accuracy, flops):
        z = (np.asarray(accuracy, np.float64) / self.divisor(flops) - self.mean) / self.std
        if self.scores == "z":
            return z
        q = self.quantiles
        last = len(q) - 1
        i = np.searchsorted(q, z, side="right")  # = Rust's partition_point(k <= z)
        inner = np.clip(i, 1, last)
        position = (inner - 1) + (z - q[inner - 1]) / (q[inner] - q[inner - 1])
        position = np.where(i == 0, (z - q[0]) / self._end_slope(False), position)
        position = np.where(i == len(q), last + (z - q[-1]) / self._end_slope(True), position)
        return self._score(position)

    def inverse(self, target, flops):
        target = np.asarray(target, np.float64)
        if self.scores == "z":
            z = target
        else:
            q = self.quantiles
            last = len(q) - 1
            position = self._position(target)
            i = np.clip(np.floor(position), 0, last - 1).astype(np.int64)
            z = q[i] + (position - i) * (q[i + 1] - q[i])
            z = np.where(position <= 0.0, q[0] + position * self._end_slope(False), z)
            z = np.where(position >= last, q[-1] + (position - last) * self._end_slope(True), z)
        return (z * self.std + self.mean) * self.divisor(flops)


def _linear(inputs, outputs, bias=True):
    # nn.Linear's default init is U(±1/√in) for weight and bias, as archdb's `Dense`.
    return torch.nn.Linear(inputs, outputs, bias=bias)


class GraphConv(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.own = _linear(hidden, hidden)
        self.neighbours = _linear(hidden, hidden, bias=False)


class Encoder(torch.nn.Module):
    def __init__(self, config, vocabulary_rows):
        super().__init__()
        h = config["hidden"]
        self.graph_features = bool(config["graph_features"])
        self.residual = bool(config.get("residual", False))
        self.op_embedding = torch.nn.Parameter(torch.empty(vocabulary_rows, h).uniform_(-1.0, 1.0))
        self.numeric = _linear(NUM_NUMERIC, h)
        self.conv = torch.nn.ModuleList(GraphConv(h) for _ in range(config["layers"]))
        pooled = h + (NUM_GRAPH if self.graph_features else 0)
        self.readout = torch.nn.ModuleList([_linear(pooled, h), _linear(h, config["embedding"])])

    def pooled(self, b, dropout=0.0):
        """Mean over each graph's nodes of the last layer's states (+ whole-graph features)."""
        x = self.op_embedding[b["labels"]] + self.numeric(b["numeric"])
        for conv in self.conv:
            if dropout > 0.0:
                x = torch.nn.functional.dropout(x, dropout, training=True)
            messages = conv.neighbours(x)[b["src"]]
            summed = torch.zeros_like(x).index_add(0, b["dst"], messages)
            updated = torch.tanh(conv.own(x) + summed)
            x = x + updated if self.residual else updated
        graphs = len(b["counts"])
        total = torch.zeros(graphs, x.shape[1], dtype=x.dtype, device=x.device).index_add(
            0, b["node_graph"], x
        )
        mean = total / b["counts"].to(x.dtype)[:, None]
        return torch.cat([mean, b["graph_features"]], 1) if self.graph_features else mean

    def readout_mlp(self, pooled):
        return self.readout[1](torch.relu(self.readout[0](pooled)))

    def forward(self, b, dropout=0.0):
        return self.readout_mlp(self.pooled(b, dropout))


class Head(torch.nn.Sequential):
    """embedding → hidden (ReLU) → 1; parameters named `0.*` and `2.*` by Sequential, so the
    artifact names are mapped in `Member.named_tensors`."""

    def __init__(self, embedding, hidden):
        super().__init__(_linear(embedding, hidden), torch.nn.ReLU(), _linear(hidden, 1))


class Member(torch.nn.Module):
    def __init__(self, encoder_config, vocabulary_rows, head_hidden, clusters):
        super().__init__()
        self.encoder = Encoder(encoder_config, vocabulary_rows)
        embedding = encoder_config["embedding"]
        self.head = torch.nn.ModuleList(Head(embedding, head_hidden) for _ in range(clusters))
        self.centroids = torch.zeros(clusters, embedding, dtype=torch.float64)
        self.fuzzifier = 2.0
        self.ood_scale = 1.0

    @staticmethod
    def artifact_name(name):
        """`head.k.0.weight` / `head.k.2.bias` (Sequential) ↔ `head.k.0.*` / `head.k.1.*`."""
        parts = name.split(".")
        if parts[0] == "head":
            parts[2] = {"0": "0", "2": "1"}[parts[2]]
        return ".".join(parts)

    def named_tensors(self):
        return {self.artifact_name(n): p for n, p in self.named_parameters()}

    def mixture(self, embeddings, memberships):
        outputs = torch.cat([h(embeddings) for h in self.head], 1)
        return (outputs * memberships).sum(1)

    def memberships(self, embeddings):
        """(memberships f64, nearest-centroid distance f64) of f32 embeddings."""
        return fcm_memberships(embeddings.double(), self.centroids.to(embeddings.device), self.fuzzifier)


def fcm_distances(points, centroids):
    """Euclidean distances, `points × clusters`, float64 (as src/predict/fcm.rs)."""
    return torch.sqrt(((points[:, None, :] - centroids[None, :, :]) ** 2).sum(2))


def fcm_memberships(points, centroids, fuzzifier):
    """Fuzzy memberships from distances (rows sum to 1; a point on centroids belongs to those
    only) and the nearest distance."""
    d = fcm_distances(points, centroids)
    nearest = d.min(1).values
    exponent = 2.0 / (fuzzifier - 1.0)
    on = d <= 1e-12
    ratio = (nearest[:, None] / torch.where(on, torch.ones_like(d), d)) ** exponent
    ratio = torch.where(on, torch.ones_like(d), ratio)
    exact = (nearest <= 1e-12)[:, None]
    u = torch.where(exact, on.to(d.dtype), ratio)
    return u / u.sum(1, keepdim=True), nearest


def normalized_entropy(u):
    clusters = u.shape[1]
    if clusters < 2:
        return torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
    safe = torch.where(u > 0, u, torch.ones_like(u))
    return -(u * torch.log(safe)).sum(1) / math.log(clusters)


class Predictor:
    """An ensemble read from (or to be written to) an archdb artifact."""

    def __init__(self, config, members):
        self.config = config
        self.members = members
        self.target = TargetTransform.from_json(config["target"])

    @classmethod
    def load(cls, path, device="cpu"):
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not an {FORMAT} artifact")
        config = json.loads(meta["config"])
        if config["format_version"] != FORMAT_VERSION:
            version = config["format_version"]
            raise ValueError(f"{path}: artifact format {version}, this reads {FORMAT_VERSION}")
        tensors = load_file(path)
        rows = len(config["vocabulary"]) + 1
        members = []
        for m, mc in enumerate(config["members"]):
            member = Member(config["encoder"], rows, config["head_hidden"], mc["clusters"])
            own = member.named_tensors()
            for name, param in own.items():
                key = f"member.{m}.{name}"
                if key not in tensors:
                    raise ValueError(f"{path}: missing tensor '{key}'")
                if tuple(tensors[key].shape) != tuple(param.shape):
                    shape, expected = tuple(tensors[key].shape), tuple(param.shape)
                    raise ValueError(f"{path}: tensor '{key}' has shape {shape}, expected {expected}")
                with torch.no_grad():
                    param.copy_(tensors[key].float())
            member.centroids = tensors[f"member.{m}.fcm.centroids"].double()
            member.fuzzifier = float(config["fuzzifier"])
            member.ood_scale = float(mc["ood_scale"])
            members.append(member.to(device))
        return cls(config, members)

    def to_bytes(self):
        tensors = {}
        for m, member in enumerate(self.members):
            for name, p in member.named_tensors().items():
                tensors[f"member.{m}.{name}"] = p.detach().float().cpu().contiguous()
            tensors[f"member.{m}.fcm.centroids"] = member.centroids.double().cpu().contiguous()
        return save(tensors, metadata={"format": FORMAT, "config": json.dumps(self.config)})

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @torch.no_grad()
    def predict(self, batcher, flops, positions=None):
        """Per graph: accuracy (member mean), std (n − 1), ood_score, membership_entropy and the
        first member's embedding, as archdb's `Predictor::predict`."""
        n = len(flops) if positions is None else len(positions)
        positions = np.arange(n) if positions is None else np.asarray(positions)
        flops = np.asarray(flops, np.float64)[positions]
        accuracy = np.zeros((len(self.members), n))
        ood = np.zeros(n)
        entropy = np.zeros(n)
        embedding = None
        for m, member in enumerate(self.members):
            member.eval()
            parts = []
            for chunk in chunks(np.arange(n), PREDICT_CHUNK):
                b = batcher.batch(positions[chunk])
                e = member.encoder(b)
                u, nearest = member.memberships(e)
                y = member.mixture(e, u.float())
                parts.append((as_numpy(e), as_numpy(u), as_numpy(nearest), as_numpy(y)))
            e, u, nearest, y = (np.concatenate([p[k] for p in parts]) for k in range(4))
            accuracy[m] = self.target.inverse(y.astype(np.float64), flops)
            ood += nearest / member.ood_scale / len(self.members)
            entropy += as_numpy(normalized_entropy(torch.from_numpy(u))) / len(self.members)
            if m == 0:
                embedding = e
        mean = accuracy.mean(0)
        std = accuracy.std(0, ddof=1) if len(self.members) > 1 else np.zeros(n)
        return [
            {
                "accuracy": float(mean[i]),
                "std": float(std[i]),
                "ood_score": float(ood[i]),
                "membership_entropy": float(entropy[i]),
                "embedding": [float(v) for v in embedding[i]],
            }
            for i in range(n)
        ]
