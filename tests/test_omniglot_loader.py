"""Omniglot loader: a small generated tree (directory and zip), malformed data, and the shared zips."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metarl.fewshot.omniglot import (
    SMALL1_ALPHABETS,
    SMALL2_ONLY_ALPHABETS,
    OmniglotFormatError,
    load_omniglot,
    preprocess_images,
    random_affine,
)

from tests.conftest import SHARED_OMNIGLOT


def character_png(seed: int) -> Image.Image:
    """A 105x105 1-bit image like Omniglot's: white paper, a black stroke box at a seed-dependent place."""
    rng = np.random.default_rng(seed)
    paper = np.ones((105, 105), dtype=bool)
    top, left = rng.integers(10, 60, size=2)
    paper[top:top + 30, left:left + 8] = False
    return Image.fromarray(paper)


def write_tree(root: Path, layout: dict[str, dict[str, int]], set_name: str = "images_background") -> Path:
    """``layout``: alphabet -> {character dir: number of drawers}; returns the set directory."""
    for alphabet, characters in layout.items():
        for c, (character, drawers) in enumerate(characters.items()):
            folder = root / set_name / alphabet / character
            folder.mkdir(parents=True, exist_ok=True)
            for d in range(drawers):
                character_png(1000 * c + d).save(folder / f"{c:04d}_{d + 1:02d}.png")
    return root / set_name


def zip_tree(root: Path, set_dir: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for file in sorted(set_dir.rglob("*")):
            archive.write(file, file.relative_to(root).as_posix())


LAYOUT = {"Alpha": {"character01": 3, "character02": 3}, "Beta": {"character01": 4}}


def test_reads_a_generated_directory_tree(tmp_path):
    write_tree(tmp_path, LAYOUT)
    data = load_omniglot(tmp_path, image_size=28)
    assert data.characters == ("Alpha/character01", "Alpha/character02", "Beta/character01")
    assert data.images.shape == (10, 1, 28, 28) and data.images.dtype == torch.float32
    assert torch.bincount(data.character_ids).tolist() == [3, 3, 4]
    assert data.alphabets == ("Alpha", "Beta")
    # ink (black stroke) becomes 1, paper 0
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert float(data.images.mean()) < 0.2 and float(data.images.max()) > 0.9


def test_zip_and_directory_give_the_same_images(tmp_path):
    set_dir = write_tree(tmp_path / "extracted", LAYOUT)
    zipped = tmp_path / "zips"
    zipped.mkdir()
    zip_tree(tmp_path / "extracted", set_dir, zipped / "images_background.zip")
    from_dir, from_zip = load_omniglot(tmp_path / "extracted"), load_omniglot(zipped)
    from_file = load_omniglot(zipped / "images_background.zip")
    assert from_dir.characters == from_zip.characters == from_file.characters
    torch.testing.assert_close(from_dir.images, from_zip.images)
    torch.testing.assert_close(from_zip.images, from_file.images)


def test_a_character_in_two_sets_is_counted_once(tmp_path):
    write_tree(tmp_path, {"Greek": {"character01": 2}, "Korean": {"character01": 2}}, "images_background_small1")
    write_tree(tmp_path, {"Greek": {"character01": 2}, "Tagalog": {"character01": 2}}, "images_background_small2")
    data = load_omniglot(tmp_path)
    assert data.characters == ("Greek/character01", "Korean/character01", "Tagalog/character01")
    assert len(data) == 6


def test_alphabet_selection_and_rotation_classes(tmp_path):
    write_tree(tmp_path, LAYOUT)
    data = load_omniglot(tmp_path, image_size=20)
    alpha = data.select_alphabets(["Alpha"])
    assert alpha.characters == ("Alpha/character01", "Alpha/character02") and len(alpha) == 6
    classes = alpha.classes(rotations=True)
    assert classes.num_classes == 8 and len(classes) == 24
    first = alpha.images[0, 0]
    rotated = classes.images[classes.labels == 1][0, 0]   # character 0 rotated by 90 degrees
    torch.testing.assert_close(rotated, torch.rot90(first, 1))
    assert classes.class_names[1] == "Alpha/character01/rot90"
    with pytest.raises(OmniglotFormatError, match="Gamma"):
        data.select_alphabets(["Gamma"])


def test_missing_and_malformed_paths_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*--data"):
        load_omniglot(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OmniglotFormatError, match="no Omniglot PNGs"):
        load_omniglot(tmp_path / "empty")
    flat = tmp_path / "flat"
    flat.mkdir()
    character_png(0).save(flat / "stray.png")
    with pytest.raises(OmniglotFormatError, match="not in Omniglot's layout"):
        load_omniglot(flat)
    broken = tmp_path / "broken" / "Alpha" / "character01"
    broken.mkdir(parents=True)
    (broken / "0001_01.png").write_bytes(b"not a png")
    with pytest.raises(OmniglotFormatError, match="cannot decode Alpha/character01/0001_01.png"):
        load_omniglot(tmp_path / "broken")
    (tmp_path / "bad.zip").write_bytes(b"truncated")
    with pytest.raises(OmniglotFormatError, match="neither a directory nor a zip"):
        load_omniglot(tmp_path / "bad.zip")
    zdir = tmp_path / "zdir"
    zdir.mkdir()
    (zdir / "images_background.zip").write_bytes(b"truncated")
    with pytest.raises(OmniglotFormatError, match="not a valid zip"):
        load_omniglot(zdir)


def test_preprocessing_accepts_what_png_readers_return():
    image = character_png(3)
    as_bool = np.asarray(image)
    assert as_bool.dtype == np.bool_
    reference = preprocess_images([image], 28)
    for variant in (as_bool, as_bool.astype(np.uint8) * 255, as_bool.astype(np.float32),
                    np.repeat((as_bool.astype(np.uint8) * 255)[..., None], 3, axis=2)):
        torch.testing.assert_close(preprocess_images([variant], 28), reference)
    torch.testing.assert_close(preprocess_images(np.stack([as_bool, as_bool]), 28), reference.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        preprocess_images([as_bool.astype(np.float32) * 2], 28)
    with pytest.raises(TypeError, match="unsupported image dtype"):
        preprocess_images([as_bool.astype(np.int64)], 28)
    torch.testing.assert_close(preprocess_images(as_bool, 28), reference)  # one (H, W) image is a batch of one
    colour = np.repeat((as_bool.astype(np.uint8) * 255)[..., None], 3, axis=2)
    torch.testing.assert_close(preprocess_images(colour, 28), reference)  # so is one (H, W, C) image
    with pytest.raises(ValueError, match="images must be"):
        preprocess_images(np.zeros((1, 2, 3, 4, 5)), 28)


@pytest.mark.skipif(not SHARED_OMNIGLOT.is_dir(), reason=f"shared Omniglot data not found at {SHARED_OMNIGLOT}")
def test_shared_minimal_background_sets():
    data = load_omniglot(SHARED_OMNIGLOT)
    assert len(data.alphabets) == 8
    assert len(data.characters) == 242          # Greek and Latin are in both zips, counted once
    assert len(data) == 242 * 20
    assert data.images.shape[1:] == (1, 28, 28)
    train, test = data.select_alphabets(SMALL1_ALPHABETS), data.select_alphabets(SMALL2_ONLY_ALPHABETS)
    assert len(train.characters) == 136 and len(test.characters) == 106
    assert not {c.split("/")[0] for c in train.characters} & {c.split("/")[0] for c in test.characters}
    assert train.classes(rotations=True).num_classes == 4 * 136


def test_random_affine_is_identity_at_zero_range_and_seeded():
    images = torch.zeros(2, 3, 1, 28, 28)
    images[..., 10:18, 12:16] = 1.0
    same = random_affine(images, np.random.default_rng(0), rotation=0.0, shift=0.0, scale=(1.0, 1.0))
    torch.testing.assert_close(same, images)
    a = random_affine(images, np.random.default_rng(1))
    b = random_affine(images, np.random.default_rng(1))
    torch.testing.assert_close(a, b)
    assert a.shape == images.shape and not torch.equal(a, images)
    assert float(a.sum()) == pytest.approx(float(images.sum()), rel=0.3)   # ink moves, little is lost
    shifted = random_affine(images, np.random.default_rng(2), rotation=0.0, shift=3.0, scale=(1.0, 1.0))
    assert not torch.equal(shifted[0, 0], shifted[0, 1])   # every image gets its own transform
