"""Few-shot text data (CLINC150, BANKING77, a user's CSV/JSON) and the offline sentence encoders."""

from __future__ import annotations

import json
import socket
import sys

import numpy as np
import pytest
import torch

from metarl.fewshot.text import load_text_dataset, text_class_split
from tests.conftest import SHARED, requires_extra

TEXT = SHARED / "data" / "text"


@pytest.mark.parametrize("name, rows, classes, split", [("banking77", 13083, 77, (50, 27)),
                                                         ("clinc150", 22500, 150, (100, 50))])
def test_shared_datasets_load_and_split_by_intent(name, rows, classes, split):
    data = load_text_dataset(name)
    assert len(data) == rows and data.n_classes == classes
    assert load_text_dataset(TEXT / name).texts == data.texts, "the same files from an explicit path"
    train, test = text_class_split(data, name)
    assert (train.n_classes, test.n_classes) == split
    assert not set(train.class_names) & set(test.class_names)
    assert len(train) + len(test) == rows
    again_train, again_test = text_class_split(load_text_dataset(name), name)
    assert again_test.class_names == test.class_names, "the split is fixed"
    assert np.array_equal(np.unique(test.labels), np.arange(test.n_classes))
    first = test.texts[0]
    assert test.class_names[test.labels[0]] == data.class_names[data.labels[data.texts.index(first)]]


def test_a_users_csv_and_clinc_json_from_any_path(tmp_path):
    rows = [(f"sentence {i} about topic {i % 6}", f"topic_{i % 6}") for i in range(60)]
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text("text,label\n" + "\n".join(f'"{t}",{c}' for t, c in rows) + "\n")
    data = load_text_dataset(csv_file)
    assert len(data) == 60 and data.n_classes == 6
    train, test = text_class_split(data)
    assert (train.n_classes, test.n_classes) == (4, 2)
    clinc = tmp_path / "clinc.json"
    clinc.write_text(json.dumps({"train": [list(r) for r in rows[:40]], "test": [list(r) for r in rows[40:]],
                                 "oos_train": [["what is love", "oos"]]}))
    assert load_text_dataset(clinc).class_names == data.class_names, "out-of-scope rows are left out"


def test_bad_text_data_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_text_dataset(tmp_path / "nothing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,topic\nhello,x\n")
    with pytest.raises(ValueError, match="'text' column and a label column"):
        load_text_dataset(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_text_dataset(broken)
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("text,label\na,x\nb,y\n")
    with pytest.raises(ValueError, match="two classes on each side"):
        text_class_split(load_text_dataset(tiny))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@requires_extra("text")
@pytest.mark.parametrize("name, dim", [("wordllama", 256), ("minilm", 384)])
def test_encoders_load_offline_and_embed_paraphrases_close(name, dim, no_network):
    from metarl.fewshot.text_encoders import make_text_encoder

    encoder = make_text_encoder(name, max_length=32)
    ids = encoder.tokenize(["Where is my new card? It has not arrived.", "My card still hasn't come",
                            "What is the exchange rate for euros?"])
    assert ids.dtype == torch.int64 and ids.shape[1] <= 32 and (ids == -1).any(), "padded with -1"
    with torch.no_grad():
        out = encoder(ids)
    assert out.shape == (3, dim) and torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    similar, unrelated = float(out[0] @ out[1]), float(out[0] @ out[2])
    assert similar > unrelated + 0.2


@requires_extra("text")
def test_minilm_trains_only_its_top_layers_and_errors_name_the_extra(monkeypatch):
    from metarl.fewshot.text_encoders import MiniLMEncoder, make_text_encoder

    encoder = MiniLMEncoder(trainable_layers=2)
    trainable = {n.split(".")[2] for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"4", "5"}
    with pytest.raises(ValueError, match="trainable_layers must be in"):
        MiniLMEncoder(trainable_layers=7)
    with pytest.raises(ValueError, match="unknown text encoder"):
        make_text_encoder("bert-large")
    monkeypatch.setitem(sys.modules, "wordllama", None)
    with pytest.raises(ValueError, match=r"pip install 'metarl\[text\]'"):
        make_text_encoder("wordllama")
