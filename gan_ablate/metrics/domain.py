"""The offline feature extractor: a small classifier trained on the data set's own labels.

Inception weights cannot be fetched everywhere; a classifier of the data's classes gives FID/KID
features (its penultimate layer) and IS logits without the network. It is trained once per
(data, architecture) and cached on disk under a hash of both, with its held-out accuracy, which is
reported next to every number it measures.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gan_ablate.atomic import write_atomically

ARCHITECTURE = "domain-cnn-v2"  # change when the network below changes: it is part of the cache key
FEATURES = 128


class DomainClassifier(nn.Module):
    """conv 32 -> pool -> conv 64 -> pool -> 3x3 average map -> 128 features (FID/KID) -> logits (IS)."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            nn.Linear(64 * 9, FEATURES), nn.ReLU(), nn.Dropout(0.3),
        )
        self.classifier = nn.Linear(FEATURES, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.classifier(features)


def cache_key(data: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256(ARCHITECTURE.encode())
    h.update(str(tuple(data.shape)).encode())
    h.update(data.detach().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return order[n_test:], order[:n_test]


@torch.no_grad()
def accuracy(model: DomainClassifier, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    model.eval()
    correct = sum((model(x[i:i + batch])[1].argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch))
    return correct / len(x)


def train_classifier(data: torch.Tensor, labels: torch.Tensor, epochs: int = 15, seed: int = 0,
                     test_fraction: float = 0.2, progress: bool = False) -> tuple[DomainClassifier, float]:
    """Train on (1 - test_fraction) of the data; returns the model and its held-out accuracy."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train_idx, test_idx = split(len(data), test_fraction, seed)
    model = DomainClassifier(data.shape[1], int(labels.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x_train, y_train = data[train_idx], labels[train_idx]
    for epoch in range(epochs):
        model.train()
        for batch in torch.randperm(len(x_train), generator=g).split(128):
            # small random shifts: the classifier must also read slightly off-centre generated digits
            x = torch.roll(x_train[batch], shifts=tuple(torch.randint(-1, 2, (2,), generator=g).tolist()), dims=(2, 3))
            loss = F.cross_entropy(model(x)[1], y_train[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if progress:
            print(f"domain classifier: epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}", flush=True)
    return model.eval(), accuracy(model, data[test_idx], labels[test_idx])


def load_or_train(data: torch.Tensor, labels: torch.Tensor, cache_dir: Path, dataset: str,
                  epochs: int | None = None) -> tuple[DomainClassifier, dict]:
    """The cached classifier for this data, training (and caching) it the first time."""
    epochs = epochs or (30 if len(data) < 3000 else 15)  # small sets (8x8 digits) need more passes
    key = cache_key(data, labels)
    weights = weights_file(cache_dir, dataset, data, labels)
    info_file = weights.parent / "info.json"
    n_classes = int(labels.max()) + 1
    if weights.exists() and info_file.exists():
        model = DomainClassifier(data.shape[1], n_classes)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval(), json.loads(info_file.read_text())
    model, test_accuracy = train_classifier(data, labels, epochs=epochs, progress=True)
    info = {"extractor": f"domain:{dataset}:{ARCHITECTURE}:{key}", "dataset": dataset, "architecture": ARCHITECTURE,
            "test_accuracy": test_accuracy, "epochs": epochs, "n_classes": n_classes, "channels": data.shape[1]}
    # parallel jobs (a joblib sweep, the test workers) share this cache: each file appears whole or not at all, the
    # weights first, so a reader that finds info.json finds whole weights
    write_atomically(weights, lambda tmp: torch.save(model.state_dict(), tmp))
    write_atomically(info_file, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=2)))
    return model, info


def weights_file(cache_dir: Path, dataset: str, data: torch.Tensor, labels: torch.Tensor) -> Path:
    return Path(cache_dir).expanduser() / f"{dataset}-{cache_key(data, labels)}" / "classifier.pt"
