"""Intent-classification text for few-shot learning: CLINC150, BANKING77, or a user's own file.

    texts = load_text_dataset("banking77")                  # ../shared/data/text/banking77, or METARL_TEXT_DATA
    texts = load_text_dataset("path/to/my_intents.csv")     # a CSV with text,label columns
    train, test = text_class_split(texts, "banking77")      # the fixed, disjoint intent split

Formats, read from any path:

- CLINC150's ``data_full.json`` (or a directory holding it): ``{"train": [[text, intent], ...], "val": ...,
  "test": ...}``; every in-scope split is pooled (few-shot splits by intent, not by the original example
  split) and the ``oos_*`` out-of-scope queries are left out.
- BANKING77's directory (``train.csv`` and ``test.csv`` with ``text,category`` columns), pooled the same way.
- Any CSV with a header naming a text column (``text``) and a label column (``label``, ``category`` or
  ``intent``), or a JSON file in CLINC's layout.

**Fixed class splits** (meta-training and meta-test intents never overlap; the split depends only on the
intent names, so every run and every machine gets the same one): the intents are sorted by name and shuffled
with a fixed seed (``numpy.random.default_rng(0)``); BANKING77's first 50 are meta-training intents and the
other 27 meta-test intents; CLINC150's first 100 and the other 50. A user's dataset is split the same way
with ``test_fraction`` (default one third) of its intents held out.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LabelledTexts", "TokenisedTexts", "load_text_dataset", "text_class_split", "text_encoder_of",
           "default_text_path", "SHARED_TEXT_DATASETS", "TEXT_SPLITS"]

#: the shared datasets' folder names
SHARED_TEXT_DATASETS = ("banking77", "clinc150")
#: (meta-training, meta-test) intents of each shared dataset
TEXT_SPLITS = {"banking77": (50, 27), "clinc150": (100, 50)}
_SPLIT_SEED = 0
_LABEL_COLUMNS = ("label", "category", "intent")


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with integer labels ``0..n_classes-1`` and the class names they stand for.

    Attributes:
        texts: the sentences.
        labels: ``(len(texts),)`` int64 class ids.
        class_names: name of each class id.
    """

    texts: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def select_classes(self, names: Sequence[str]) -> "LabelledTexts":
        """Only the examples of the classes ``names``, relabelled ``0..len(names)-1`` in that order."""
        index = {n: i for i, n in enumerate(self.class_names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise ValueError(f"no class {missing[0]!r} in this dataset")
        new_id = np.full(self.n_classes, -1, dtype=np.int64)
        new_id[[index[n] for n in names]] = np.arange(len(names))
        keep = new_id[self.labels] >= 0
        texts = tuple(t for t, k in zip(self.texts, keep) if k)
        return LabelledTexts(texts, new_id[self.labels[keep]], tuple(names))

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]], where: str) -> "LabelledTexts":
        """From ``(text, class name)`` pairs; classes numbered in sorted-name order."""
        kept = []
        for row, (text, label) in enumerate(pairs, start=1):
            text, label = str(text), str(label)
            if not text.strip() and not label.strip():
                continue  # an empty line
            if not text.strip() or not label.strip():
                missing = "text" if not text.strip() else "label"
                raise ValueError(f"data row {row} of {where} has a blank {missing} ({label if label.strip() else text!r:.60}): "
                                 "fill it in or delete the row")
            kept.append((text, label))
        pairs = kept
        if not pairs:
            raise ValueError(f"{where} holds no (text, label) rows")
        names = tuple(sorted({c for _, c in pairs}))
        index = {n: i for i, n in enumerate(names)}
        return cls(tuple(t for t, _ in pairs), np.array([index[c] for _, c in pairs], dtype=np.int64), names)


def default_text_path(name: str) -> Path:
    """The shared copy of dataset ``name``: ``$METARL_TEXT_DATA/<name>`` or ``../shared/data/text/<name>``
    beside the repository."""
    root = os.environ.get("METARL_TEXT_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2].parent / "shared" / "data" / "text"
    return base / name


def _read_csv(path: Path) -> list[tuple[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            label = next((c for c in _LABEL_COLUMNS if c in header), None)
            if "text" not in header or label is None:
                raise ValueError(f"{path}: a CSV needs a header with a 'text' column and a label column "
                                 f"({' / '.join(_LABEL_COLUMNS)}); it has {reader.fieldnames}")
            keys = {h.strip().lower(): h for h in reader.fieldnames or []}
            return [(row[keys["text"]] or "", row[keys[label]] or "") for row in reader]  # a short row: blanks
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason}): save it as UTF-8 CSV") from exc
    except csv.Error as exc:
        raise ValueError(f"{path} is not a readable CSV ({exc})") from exc


def _read_clinc_json(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): give CLINC150's data_full.json or a CSV") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected CLINC's layout, a mapping of split name -> [[text, intent], ...]")
    pairs = []
    for split, rows in data.items():
        if split.startswith("oos"):
            continue  # out-of-scope queries have no intent
        for row in rows:
            if not (isinstance(row, (list, tuple)) and len(row) == 2):
                raise ValueError(f"{path}: split {split!r} has a row that is not [text, intent]: {row!r}")
            pairs.append((row[0], row[1]))
    return pairs


def load_text_dataset(source: str | os.PathLike) -> LabelledTexts:
    """``"banking77"`` / ``"clinc150"`` (the shared copies), or a path to a CSV, a CLINC-layout JSON, or a
    directory holding ``data_full.json`` or ``*.csv`` files (pooled).

    Raises:
        ValueError: a missing path or a file in no known layout (the message says which layouts work).
    """
    path = default_text_path(str(source)) if str(source) in SHARED_TEXT_DATASETS else Path(source)
    if not path.exists():
        hint = " (set METARL_TEXT_DATA to the folder holding banking77/ and clinc150/)" \
            if str(source) in SHARED_TEXT_DATASETS else ""
        raise ValueError(f"text data {path} does not exist{hint}")
    if path.is_dir():
        clinc = path / "data_full.json"
        if clinc.is_file():
            return LabelledTexts.from_pairs(_read_clinc_json(clinc), str(clinc))
        files = sorted(path.glob("*.csv"))
        if not files:
            raise ValueError(f"{path} holds neither data_full.json (CLINC150) nor *.csv files (text,label)")
        return LabelledTexts.from_pairs([p for f in files for p in _read_csv(f)], str(path))
    if path.suffix.lower() == ".json":
        return LabelledTexts.from_pairs(_read_clinc_json(path), str(path))
    return LabelledTexts.from_pairs(_read_csv(path), str(path))


def text_class_split(data: LabelledTexts, dataset: str | None = None, test_fraction: float = 1 / 3
                     ) -> tuple[LabelledTexts, LabelledTexts]:
    """(meta-training classes, meta-test classes): the fixed intent split of ``dataset`` (``TEXT_SPLITS``), or
    ``test_fraction`` of the classes held out for another dataset. Both come from the sorted class names
    shuffled with a fixed seed, so they never depend on the run.

    Raises:
        ValueError: fewer than two classes on either side.
    """
    names = sorted(data.class_names)
    order = [names[i] for i in np.random.default_rng(_SPLIT_SEED).permutation(len(names))]
    fixed = TEXT_SPLITS.get(dataset or "")
    # the fixed split where the data has the dataset's intents (else a file of another layout: a fraction)
    n_test = fixed[1] if fixed and len(names) == sum(fixed) else int(round(len(names) * test_fraction))
    if n_test < 2 or len(names) - n_test < 2:
        raise ValueError(f"a class split needs at least two classes on each side; this dataset has {len(names)}")
    return data.select_classes(order[:-n_test]), data.select_classes(order[-n_test:])


@dataclass(frozen=True)
class TokenisedTexts:
    """A text dataset as one ``(n, L)`` tensor of token ids (``-1`` padding), tokenised once per run.

    Attributes:
        inputs: the token ids (what episodes index).
        labels: ``(n,)`` int64 class ids.
        class_names: name of each class id.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def of(cls, data: LabelledTexts, encoder: nn.Module) -> "TokenisedTexts":
        """``data`` tokenised with ``encoder.tokenize``."""
        return cls(encoder.tokenize(data.texts), torch.from_numpy(data.labels), data.class_names)

    @classmethod
    def concatenate(cls, parts: Sequence["TokenisedTexts"], names: Sequence[str]) -> "TokenisedTexts":
        """Several datasets as one: ids padded to the longest, labels numbered on (``parts[1]``'s first class
        after ``parts[0]``'s last), class names prefixed ``"<name>/"`` when there are several."""
        if len(parts) == 1:
            return parts[0]
        length = max(p.inputs.shape[1] for p in parts)
        inputs = torch.cat([F.pad(p.inputs, (0, length - p.inputs.shape[1]), value=-1) for p in parts])
        offsets = np.cumsum([0] + [p.num_classes for p in parts[:-1]])
        labels = torch.cat([p.labels + int(o) for p, o in zip(parts, offsets)])
        classes = tuple(f"{n}/{c}" for n, p in zip(names, parts) for c in p.class_names)
        return cls(inputs, labels, classes)


def text_encoder_of(module: nn.Module) -> nn.Module:
    """The sentence encoder inside a few-shot text learner (ProtoNet's ``encoder``, MAML's ``net.encoder``)."""
    encoder = getattr(module, "encoder", None) or getattr(getattr(module, "net", None), "encoder", None)
    if encoder is None or not hasattr(encoder, "tokenize"):
        raise TypeError(f"{type(module).__name__} has no sentence encoder")
    return encoder
