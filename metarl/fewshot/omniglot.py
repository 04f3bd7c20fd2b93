"""Omniglot (Lake et al. 2015): reading the standard layout and the preprocessing every learner uses.

The data comes as ``<set>/<Alphabet>/characterNN/<id>_<drawer>.png`` (105x105 1-bit images),
either extracted in a directory or inside the published zip files (``images_background.zip``,
``images_evaluation.zip``, ``images_background_small1.zip``, ...). :func:`load_omniglot` reads any
mix of these from a path; a character present in several sets (the two minimal background sets
both hold Greek and Latin) is counted once.

Preprocessing (:func:`preprocess_images`) is one function shared by the loader and by a trained
learner's ``adapt``/``predict``, so images a user reads from PNG files go through exactly what
the learner was trained on: greyscale, Lanczos resize to ``image_size`` (28 as in the MAML and
ProtoNets papers), values in [0, 1] with ink = 1 and paper = 0.

    data = load_omniglot("../shared/data/omniglot")
    train = data.select_alphabets(SMALL1_ALPHABETS).classes(rotations=True)
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "OmniglotCharacters",
    "OmniglotFormatError",
    "OmniglotNotFoundError",
    "LabelledImages",
    "load_omniglot",
    "preprocess_images",
    "random_affine",
    "default_omniglot_path",
    "SMALL1_ALPHABETS",
    "SMALL2_ONLY_ALPHABETS",
]

#: the five alphabets of ``images_background_small1.zip`` (the default meta-training alphabets)
SMALL1_ALPHABETS = ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
#: the three alphabets found only in ``images_background_small2.zip`` (the default held-out alphabets)
SMALL2_ONLY_ALPHABETS = ("Japanese_(katakana)", "Sanskrit", "Tagalog")

_CHARACTER_DIR = re.compile(r"^character\d+$")
_LAYOUT = "<set>/<Alphabet>/characterNN/*.png"


class OmniglotFormatError(ValueError):
    """The Omniglot path does not hold the expected layout, or a file in it is unreadable."""


class OmniglotNotFoundError(OmniglotFormatError, FileNotFoundError):
    """The Omniglot data path does not exist."""


def default_omniglot_path() -> Path:
    """``$METARL_OMNIGLOT`` if set, else ``../shared/data/omniglot`` next to the repository."""
    env = os.environ.get("METARL_OMNIGLOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "omniglot"


def _to_greyscale_image(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("L")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4):
        if array.shape[-1] in (1, 2):  # grey, or grey and alpha
            array = array[..., 0]
        else:
            return _to_greyscale_image(Image.fromarray(_as_uint8(array)))
    if array.ndim != 2:
        raise ValueError(
            f"an image must be a 2-D greyscale array (H, W) or (H, W, channels) with 1-4 channels, got shape "
            f"{array.shape}"
        )
    return Image.fromarray(_as_uint8(array), mode="L")


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0.0 or np.nanmax(array) > 1.0 or not np.isfinite(array).all()):
            raise ValueError("float images must hold values in [0, 1] (1 = white paper, as read from the PNGs)")
        return np.round(array * 255.0).astype(np.uint8)
    raise TypeError(
        f"unsupported image dtype {array.dtype}; pass bool (as numpy reads the 1-bit PNGs), uint8 or float in [0, 1]"
    )


def image_batch(images: Any) -> list[Any] | Any:
    """The images of ``images``, the one rule of every learner that reads images (few-shot and continual): one
    image as an array ``(H, W)`` or ``(H, W, C)`` with ``C`` in 1-4 (a single PIL image too) is a batch of
    one; ``(N, H, W)`` and ``(N, H, W, C)`` arrays and sequences are batches."""
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        shape = tuple(images.shape)
        if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 2, 3, 4) and shape[0] > 4):
            return [images]
        if len(shape) not in (3, 4):
            raise ValueError(f"images must be (H, W), (H, W, C), (N, H, W) or (N, H, W, C) arrays, got shape {shape}")
    return images


def preprocess_images(images: Iterable[Any] | np.ndarray | torch.Tensor, image_size: int = 28) -> torch.Tensor:
    """Raw Omniglot images -> float tensor ``(n, 1, image_size, image_size)``, ink = 1, paper = 0.

    Args:
        images: one image, a sequence of images, or one array stacked on the first axis (:func:`image_batch`).
            Each image is what a PNG reader returns for an Omniglot file (white paper, dark ink): a bool array
            (NumPy on the 1-bit PNGs), uint8 0-255, float in [0, 1], or a PIL image, greyscale ``(H, W)`` or
            colour ``(H, W, C)``, of any size.
        image_size: side length after the Lanczos resize.
    """
    out = []
    images = image_batch(images)
    for image in images:
        grey = _to_greyscale_image(image)
        if grey.size != (image_size, image_size):
            grey = grey.resize((image_size, image_size), resample=Image.Resampling.LANCZOS)
        out.append(1.0 - np.asarray(grey, dtype=np.float32) / 255.0)
    if not out:
        raise ValueError("no images given")
    return torch.from_numpy(np.stack(out)[:, None])


def random_affine(images: torch.Tensor, rng: np.random.Generator, *, rotation: float = 10.0, shift: float = 2.0,
                  scale: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """Each image independently rotated, scaled and shifted a little (training augmentation).

    Args:
        images: ``(..., C, H, W)`` with ink = 1 on a 0 background (the border fills with 0).
        rng: source of the random transforms.
        rotation: maximum rotation in degrees (uniform in +-rotation).
        shift: maximum translation in pixels along each axis.
        scale: range of the uniform scale factor.
    """
    lead, (channels, height, width) = images.shape[:-3], images.shape[-3:]
    flat = images.reshape(-1, channels, height, width)
    n = flat.shape[0]
    angle = np.deg2rad(rng.uniform(-rotation, rotation, n))
    zoom = rng.uniform(*scale, n)
    tx, ty = rng.uniform(-shift, shift, (2, n)) * np.array([[2.0 / width], [2.0 / height]])
    # affine_grid maps output to input coordinates: the inverse of rotate-and-zoom, then the shift
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = torch.from_numpy(np.stack([np.stack([cos, -sin, tx], 1), np.stack([sin, cos, ty], 1)], 1)).to(flat.dtype)
    grid = torch.nn.functional.affine_grid(theta, list(flat.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(*lead, channels, height, width)


@dataclass(frozen=True)
class LabelledImages:
    """Images with one integer class label each (the input of :class:`~metarl.fewshot.data.EpisodicSampler`).

    Attributes:
        images: ``(n, 1, H, W)`` float tensor.
        labels: ``(n,)`` int64 tensor of class ids ``0 .. len(class_names)-1``.
        class_names: a readable name per class id (``Alphabet/characterNN`` plus ``/rotK`` for rotations).
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def inputs(self) -> torch.Tensor:
        """What a learner reads (the images), under the name every few-shot dataset shares."""
        return self.images


@dataclass(frozen=True)
class OmniglotCharacters:
    """Preprocessed Omniglot characters.

    Attributes:
        images: ``(n, 1, image_size, image_size)`` float tensor, ink = 1.
        character_ids: ``(n,)`` int64 tensor: which character each image shows.
        characters: ``Alphabet/characterNN`` per character id.
        image_size: side length of the images.
    """

    images: torch.Tensor
    character_ids: torch.Tensor
    characters: tuple[str, ...]
    image_size: int

    @property
    def alphabets(self) -> tuple[str, ...]:
        """The distinct alphabets, sorted."""
        return tuple(sorted({name.split("/")[0] for name in self.characters}))

    def __len__(self) -> int:
        return len(self.character_ids)

    def select_alphabets(self, alphabets: Sequence[str]) -> "OmniglotCharacters":
        """The characters of the named alphabets only (character ids renumbered from 0).

        Raises:
            OmniglotFormatError: an alphabet is not in the data (the message lists those that are).
        """
        missing = sorted(set(alphabets) - set(self.alphabets))
        if missing:
            raise OmniglotFormatError(
                f"alphabet(s) {missing} are not in the Omniglot data; it holds {list(self.alphabets)}"
            )
        wanted = set(alphabets)
        keep_chars = [i for i, name in enumerate(self.characters) if name.split("/")[0] in wanted]
        remap = torch.full((len(self.characters),), -1, dtype=torch.int64)
        remap[keep_chars] = torch.arange(len(keep_chars))
        mask = remap[self.character_ids] >= 0
        return OmniglotCharacters(
            images=self.images[mask],
            character_ids=remap[self.character_ids[mask]],
            characters=tuple(self.characters[i] for i in keep_chars),
            image_size=self.image_size,
        )

    def classes(self, rotations: bool = False) -> LabelledImages:
        """One class per character; with ``rotations`` also its 90/180/270-degree rotations as
        further classes (four times the classes, as in the MAML and ProtoNets papers)."""
        if not rotations:
            return LabelledImages(self.images, self.character_ids, self.characters)
        images = torch.cat([torch.rot90(self.images, k, dims=(2, 3)) for k in range(4)])
        labels = torch.cat([self.character_ids * 4 + k for k in range(4)])
        names = tuple(f"{name}/rot{90 * k}" for name in self.characters for k in range(4))
        return LabelledImages(images, labels, names)


def _png_members(path: Path) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path parts, opener) of every PNG in a directory tree or zip file."""
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise OmniglotFormatError(f"{path} is neither a directory nor a zip file; expected Omniglot's {_LAYOUT}")
        yield from _zip_members(path)
        return
    for zip_path in sorted(path.glob("*.zip")):
        if not zipfile.is_zipfile(zip_path):
            raise OmniglotFormatError(f"{zip_path} is not a valid zip file (truncated download?); replace or remove it")
        yield from _zip_members(zip_path)
    for png in sorted(path.rglob("*.png")):
        yield png.relative_to(path).parts, png.read_bytes


def _zip_members(zip_path: Path) -> Iterator[tuple[tuple[str, ...], Any]]:
    with zipfile.ZipFile(zip_path) as archive:
        def read(name: str) -> bytes:
            try:
                return archive.read(name)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:  # a damaged member of a valid zip
                raise OmniglotFormatError(f"{name} in {zip_path} cannot be decompressed ({type(exc).__name__}: "
                                          f"{str(exc)[:80]}); the zip is damaged: download it again") from None

        for name in sorted(archive.namelist()):
            if name.lower().endswith(".png") and not name.startswith("__MACOSX/"):
                yield (zip_path.name, *name.split("/")), (lambda n=name: read(n))


def load_omniglot(path: str | os.PathLike, image_size: int = 28) -> OmniglotCharacters:
    """Read every Omniglot character under ``path`` (a directory of zips and/or extracted sets, or one zip).

    Args:
        path: the data location, e.g. ``../shared/data/omniglot``.
        image_size: side length of the preprocessed images.

    Raises:
        OmniglotNotFoundError: ``path`` does not exist (a ``FileNotFoundError`` and an
            :class:`OmniglotFormatError`).
        OmniglotFormatError: no PNGs in the Omniglot layout, a PNG outside it, or an unreadable file.
    """
    path = Path(path)
    if not path.exists():
        raise OmniglotNotFoundError(
            f"Omniglot data path {path} does not exist; pass --data DIR or set METARL_OMNIGLOT=DIR, a directory "
            "holding images_background*.zip / images_evaluation.zip or their extracted folders (from "
            "github.com/brendenlake/omniglot, folder python/; see docs/fewshot.md#getting-omniglot)"
        )
    if image_size < 4:
        raise ValueError(f"image_size must be at least 4, got {image_size}")
    # (alphabet, character) -> (source, [(file name, bytes)]); the first source a character is seen in wins
    found: dict[tuple[str, str], tuple[str, list[tuple[str, bytes]]]] = {}
    for parts, read in _png_members(path):
        if len(parts) < 3 or not _CHARACTER_DIR.match(parts[-2]):
            raise OmniglotFormatError(
                f"{'/'.join(parts)} under {path} is not in Omniglot's layout {_LAYOUT}; "
                "point --data at the folder holding the zips or the extracted sets"
            )
        key, source = (parts[-3], parts[-2]), "/".join(parts[:-3])
        entry = found.setdefault(key, (source, []))
        if entry[0] == source:
            entry[1].append((parts[-1], read()))
    if not found:
        raise OmniglotFormatError(f"no Omniglot PNGs found under {path}; expected {_LAYOUT} in a directory or zip")
    images, character_ids, characters = [], [], []
    for char_id, key in enumerate(sorted(found)):
        _, files = found[key]
        decoded = []
        for name, data in sorted(files):
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
                    decoded.append(image.convert("L"))
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise OmniglotFormatError(f"cannot decode {key[0]}/{key[1]}/{name} under {path}: {exc}") from exc
        images.append(preprocess_images(decoded, image_size))
        character_ids.append(torch.full((len(decoded),), char_id, dtype=torch.int64))
        characters.append(f"{key[0]}/{key[1]}")
    return OmniglotCharacters(torch.cat(images), torch.cat(character_ids), tuple(characters), image_size)
