# SPDX-License-Identifier: Apache-2.0
"""archdb's training procedure (src/predict/train.rs) in PyTorch: per member (1) soft-positive
contrastive pre-training of the encoder on every graph, (2) regression of encoder + one head on
the member's training fold with MSE + rank_weight × pairwise logistic loss, keeping the epoch of
best validation Kendall τ, (3) fuzzy c-means (k-means++ start) on every graph's embedding, OOD
scale = 95th percentile nearest-centroid distance, (4) per-cluster heads from copies of the
regression head on frozen embeddings. Same method and settings, not the same random numbers."""

import copy
import math
import time

import numpy as np
import torch

from .data import Batcher, as_numpy, chunks
from .model import FORMAT_VERSION, Member, Predictor, TargetTransform, fcm_distances, fcm_memberships

def merged(base, overrides):
    """`overrides` merged into `base` field by field (unknown fields are an error, as archdb's)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if key not in out:
            raise ValueError(f"unknown setting {key}")
        if isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def kendall_tau_b(x, y):
    """Kendall τ-b with ties (NaN when undefined), O(n²)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)
    if n < 2:
        return float("nan")
    iu = np.triu_indices(n, 1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    pairs = len(dx)
    denominator = math.sqrt(float(pairs - (dx == 0).sum()) * float(pairs - (dy == 0).sum()))
    return float((dx * dy).sum() / denominator) if denominator > 0 else float("nan")


def regression_loss(predicted, targets, rank_weight):
    """MSE + rank_weight × mean softplus(−sign(yᵢ − yⱼ)(ŷᵢ − ŷⱼ)) over pairs with yᵢ ≠ yⱼ."""
    mse = ((predicted - targets) ** 2).mean()
    if rank_weight == 0 or len(targets) < 2:
        return mse
    signs = torch.sign(targets[:, None] - targets[None, :])
    pairs = (signs != 0).sum()
    if int(pairs) == 0:
        return mse
    margin = -(predicted[:, None] - predicted[None, :]) * signs
    ranking = (torch.nn.functional.softplus(margin) * signs.abs()).sum() / pairs
    return mse + rank_weight * ranking


def soft_positive_weights(signatures, temperature):
    """`2N × 2N` weights of every other view as a positive of each anchor (rows sum to 1)."""
    n = signatures.shape[0]
    d = torch.cdist(signatures, signatures).repeat(2, 2)
    logits = -d / temperature
    logits.fill_diagonal_(float("-inf"))
    return torch.softmax(logits, 1).float()


def contrastive_loss(z, alpha, temperature):
    views = z.shape[0]
    similarities = z @ z.T / temperature
    masked = similarities - 1e9 * torch.eye(views, device=z.device, dtype=z.dtype)
    log_p = torch.log_softmax(masked, 1)
    return -(log_p * alpha).sum() / views


class Projection(torch.nn.Module):
    def __init__(self, embedding, projection):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(embedding, embedding), torch.nn.ReLU(), torch.nn.Linear(embedding, projection)
        )

    def forward(self, e):
        z = self.layers(e)
        return z / (z.norm(dim=1, keepdim=True) + 1e-8)


def kmeans(points, k, generator, runs=3, iterations=300, tolerance=1e-4):
    """Lloyd's k-means from k-means++ seeds, the lowest-inertia of `runs` (float64)."""
    best = None
    n = points.shape[0]
    for _ in range(runs):
        first = int(generator.integers(n))
        centroids = [points[first]]
        for _ in range(1, k):
            d2 = (fcm_distances(points, torch.stack(centroids)).min(1).values ** 2).cpu().numpy()
            total = d2.sum()
            pick = int(generator.choice(n, p=d2 / total)) if total > 0 else int(generator.integers(n))
            centroids.append(points[pick])
        c = torch.stack(centroids)
        previous = math.inf
        for _ in range(iterations):
            d = fcm_distances(points, c)
            assign = d.argmin(1)
            inertia = float((d.min(1).values ** 2).sum())
            for j in range(k):
                mine = points[assign == j]
                if len(mine) > 0:
                    c[j] = mine.mean(0)
            if previous - inertia <= tolerance * max(inertia, 1e-12):
                break
            previous = inertia
        inertia = float((fcm_distances(points, c).min(1).values ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, c.clone())
    return best[1]


def fcm_fit(points, clusters, fuzzifier, generator, iterations=300, tolerance=1e-6):
    """Fuzzy c-means centroids (float64), as src/predict/fcm.rs."""
    if fuzzifier <= 1.0:
        raise ValueError(f"fuzzifier must be > 1, got {fuzzifier}")
    clusters = min(clusters, points.shape[0])
    if clusters == 1:
        return points.mean(0, keepdim=True)
    centroids = kmeans(points, clusters, generator)
    u, _ = fcm_memberships(points, centroids, fuzzifier)
    for _ in range(iterations):
        w = u**fuzzifier
        totals = w.sum(0)
        new = (w.T @ points) / torch.where(totals > 0, totals, torch.ones_like(totals))[:, None]
        centroids = torch.where((totals > 0)[:, None], new, centroids)
        following, _ = fcm_memberships(points, centroids, fuzzifier)
        change = float((following - u).abs().max())
        u = following
        if change <= tolerance:
            break
    return centroids


class Trainer:
    def __init__(self, data, config, device, progress):
        self.data = data
        self.config = config
        self.device = device
        self.progress = progress
        self.batcher = Batcher(data, device)
        accuracy = np.asarray(data.accuracy, np.float64)
        self.labelled = np.flatnonzero(np.isfinite(accuracy))
        if len(self.labelled) < 2:
            raise ValueError("training needs at least two labelled graphs")
        self.accuracy = accuracy
        self.flops = np.asarray(data.flops, np.float64)
        self.target = TargetTransform.fit(
            accuracy[self.labelled],
            self.flops[self.labelled],
            config["flops_transform"],
            config.get("target_scores", "z"),
        )
        targets = np.full(len(data), np.nan, np.float32)
        targets[self.labelled] = self.target.forward(accuracy[self.labelled], self.flops[self.labelled])
        self.targets = torch.as_tensor(targets, device=device)
        self.signatures = torch.as_tensor(np.asarray(data.spectral, np.float64), device=device)
        self.rows = len(data.vocabulary) + 1

    def report(self, member, stage, epoch, loss, tau, started):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        self.progress(
            {
                "member": member,
                "stage": stage,
                "epoch": epoch,
                "loss": loss,
                "validation_kendall": tau,
                "seconds": time.time() - started,
            }
        )

    def embed(self, encoder, idx):
        with torch.no_grad():
            return torch.cat([encoder(self.batcher.batch(c)) for c in chunks(np.asarray(idx), 512)])

    def kendall(self, idx, predicted):
        accuracy = self.target.inverse(as_numpy(predicted).astype(np.float64), self.flops[idx])
        return kendall_tau_b(accuracy, self.accuracy[idx])

    def train(self):
        c = self.config
        order = np.random.default_rng(c["seed"]).permutation(self.labelled)
        n = len(self.labelled)
        held_out = 0
        if c["validation_fraction"] > 0:
            held_out = min(max(int(math.floor(n * c["validation_fraction"] + 0.5)), 1), n - 1)
        members, validation = [], []
        for m in range(c["ensemble"]):
            start = (m * held_out) % n
            fold = np.array([order[(start + k) % n] for k in range(held_out)], dtype=np.int64)
            held = set(fold.tolist())
            train_idx = np.array([i for i in order if i not in held], dtype=np.int64)
            seed = (c["seed"] + (m + 1) * 0x9E3779B97F4A7C15) % 2**64
            member, tau = self.train_member(m, seed, train_idx, fold)
            members.append(member)
            validation.append(tau)
        config = {
            "format_version": FORMAT_VERSION,
            "encoder": c["encoder"],
            "head_hidden": c["head_hidden"],
            "features": self.data.features,
            "numeric_features": self.data.numeric_features,
            "vocabulary": self.data.vocabulary,
            "target": self.target.to_json(),
            "fuzzifier": c["fuzzifier"],
            "members": [{"clusters": len(mb.head), "ood_scale": mb.ood_scale} for mb in members],
            "provenance": {
                "trainer": "pytorch",
                "torch": torch.__version__,
                "device": torch.cuda.get_device_name(0) if self.device.startswith("cuda") else "cpu",
                "train_config": c,
                "training_set": self.data.target,
                "samples": len(self.data),
                "labelled": n,
                "validation_kendall": validation,
            },
        }
        return Predictor(config, [mb.cpu() for mb in members])

    def train_member(self, m, seed, train_idx, fold):
        c = self.config
        torch.manual_seed(seed % 2**63)
        generator = np.random.default_rng(seed)
        member = Member(c["encoder"], self.rows, c["head_hidden"], 1).to(self.device)
        member.fuzzifier = float(c["fuzzifier"])
        if c["contrastive"]["epochs"] > 0 and len(self.data) >= 2:
            self.pretrain(m, member.encoder, generator)
        best_tau = self.regress(m, member, train_idx, fold, generator)

        points = self.embed(member.encoder, np.arange(len(self.data))).double()
        member.centroids = fcm_fit(points, c["clusters"], member.fuzzifier, generator)
        nearest = np.sort(as_numpy(fcm_distances(points, member.centroids).min(1).values))
        member.ood_scale = max(float(nearest[int(math.floor((len(nearest) - 1) * 0.95 + 0.5))]), 1e-9)

        clusters = member.centroids.shape[0]
        member.head = torch.nn.ModuleList(copy.deepcopy(member.head[0]) for _ in range(clusters))
        if clusters > 1 and c["head_epochs"] > 0:
            tau = self.fit_heads(m, member, train_idx, fold, generator)
            if tau is not None:
                best_tau = tau
        return member, best_tau

    def pretrain(self, m, encoder, generator):
        cc = self.config["contrastive"]
        projection = Projection(self.config["encoder"]["embedding"], cc["projection"]).to(self.device)
        params = list(encoder.parameters()) + list(projection.parameters())
        optimizer = torch.optim.AdamW(params, lr=cc["learning_rate"], weight_decay=0.0)
        encoder.train()
        for epoch in range(cc["epochs"]):
            started = time.time()
            order = generator.permutation(len(self.data))
            total, count = 0.0, 0
            for chunk in chunks(order, max(cc["batch_size"], 2)):
                if len(chunk) < 2:
                    continue
                b = self.batcher.batch(chunk)
                views = torch.cat([encoder(b, cc["dropout"]), encoder(b, cc["dropout"])])
                signatures = self.signatures[torch.as_tensor(chunk, device=self.device)]
                alpha = soft_positive_weights(signatures, cc["spectral_temperature"])
                loss = contrastive_loss(projection(views), alpha, cc["temperature"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(chunk)
                count += len(chunk)
            self.report(m, "Pretrain", epoch, total / max(count, 1), None, started)

    def regress(self, m, member, train_idx, fold, generator):
        c = self.config
        params = list(member.encoder.parameters()) + list(member.head[0].parameters())
        optimizer = torch.optim.AdamW(params, lr=c["learning_rate"], weight_decay=c["weight_decay"])
        best = None
        for epoch in range(c["epochs"]):
            started = time.time()
            member.train()
            order = generator.permutation(train_idx)
            total, count = 0.0, 0
            for chunk in chunks(order, c["batch_size"]):
                e = member.encoder(self.batcher.batch(chunk))
                predicted = member.head[0](e).squeeze(1)
                targets = self.targets[torch.as_tensor(chunk, device=self.device)]
                loss = regression_loss(predicted, targets, c["rank_weight"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(chunk)
                count += len(chunk)
            tau = None
            if len(fold) > 0:
                with torch.no_grad():
                    tau = self.kendall(fold, member.head[0](self.embed(member.encoder, fold)).squeeze(1))
            best = keep_best(best, tau, member)
            self.report(m, "Regression", epoch, total / max(count, 1), tau, started)
        return restore_best(best, member)

    def fit_heads(self, m, member, train_idx, fold, generator):
        c = self.config

        def frozen(idx):
            e = self.embed(member.encoder, idx)
            u, _ = member.memberships(e)
            return e, u.float()

        train_e, train_u = frozen(train_idx)
        validation = frozen(fold) if len(fold) > 0 else None
        targets = self.targets[torch.as_tensor(train_idx, device=self.device)]
        optimizer = torch.optim.AdamW(
            member.head.parameters(), lr=c["head_learning_rate"], weight_decay=c["weight_decay"]
        )
        best = None
        for epoch in range(c["head_epochs"]):
            started = time.time()
            order = torch.as_tensor(generator.permutation(len(train_idx)), device=self.device)
            total, count = 0.0, 0
            for rows in chunks(order, c["batch_size"]):
                predicted = member.mixture(train_e[rows], train_u[rows])
                loss = regression_loss(predicted, targets[rows], c["rank_weight"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(rows)
                count += len(rows)
            tau = None
            if validation is not None:
                with torch.no_grad():
                    tau = self.kendall(fold, member.mixture(*validation))
            best = keep_best(best, tau, member)
            self.report(m, "Heads", epoch, total / max(count, 1), tau, started)
        return restore_best(best, member)


def keep_best(best, tau, member):
    if tau is not None and math.isfinite(tau) and (best is None or tau > best[0]):
        return (tau, copy.deepcopy(member.state_dict()))
    return best


def restore_best(best, member):
    if best is None:
        return None
    member.load_state_dict(best[1])
    return best[0]


def train(data, device, overrides, progress):
    """A `Predictor` trained on a `TrainingSet` with its train_config (plus `overrides`)."""
    config = merged(data.train_config, overrides)
    if config["ensemble"] == 0 or config["batch_size"] == 0 or config["encoder"]["layers"] == 0:
        raise ValueError("ensemble, batch_size and encoder.layers must be positive")
    return Trainer(data, config, device, progress).train()
