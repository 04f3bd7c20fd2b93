"""Few-shot intent classification through ``metarl fewshot``: ProtoNets, MAML, FOMAML and the frozen-encoder
baseline on text, and a trained learner used on raw strings."""

from __future__ import annotations

import json
import sys

import pytest

import metarl
from metarl.cli import main
from metarl.fewshot.text import load_text_dataset, text_class_split
from tests.conftest import requires_extra

SHORT = ["--iterations", "2", "--metatest-tasks", "10", "--meta-batch-size", "2", "--no-progress"]


@requires_extra("text")
@pytest.mark.parametrize("algo, dataset", [("protonet", "banking77"), ("maml", "clinc150"), ("fomaml", "banking77")])
def test_text_learners_train_and_meta_test_on_held_out_intents(algo, dataset, tmp_path):
    logdir = tmp_path / algo
    assert main(["fewshot", "--algo", algo, "--dataset", dataset, "--logdir", str(logdir), *SHORT]) == 0
    result = json.loads((logdir / "metatest.json").read_text())
    assert set(result["accuracy"]) == {"5w1s", "5w5s", "20w1s"} and result["encoder"] == "wordllama"
    train, test = text_class_split(load_text_dataset(dataset), dataset)
    assert result["test_intents"] == list(test.class_names)
    assert not set(result["test_intents"]) & set(train.class_names)
    assert all(0.2 <= a <= 1.0 for a in result["accuracy"].values()), "far above chance (0.05-0.2)"


@requires_extra("text")
def test_meta_training_lifts_the_frozen_encoder_and_resumes_exactly(tmp_path):
    """A short learning check (WordLlama's sparse table and lazy Adam) and a resume that continues the same run."""
    common = ["fewshot", "--algo", "protonet", "--dataset", "banking77", "--metatest-tasks", "100",
              "--checkpoint-every", "150", "--no-progress"]
    assert main([*common, "--iterations", "0", "--logdir", str(tmp_path / "frozen")]) == 0
    assert main([*common, "--iterations", "300", "--logdir", str(tmp_path / "trained")]) == 0
    frozen, trained = (json.loads((tmp_path / d / "metatest.json").read_text())["accuracy"]["5w1s"]
                       for d in ("frozen", "trained"))
    assert trained > frozen + 0.02, (frozen, trained)
    assert main([*common, "--iterations", "150", "--logdir", str(tmp_path / "resumed")]) == 0
    assert main(["fewshot", "--resume", str(tmp_path / "resumed"), "--iterations", "300", "--no-progress"]) == 0
    resumed = json.loads((tmp_path / "resumed" / "metatest.json").read_text())["accuracy"]["5w1s"]
    assert resumed == trained


@requires_extra("text")
def test_a_trained_text_learner_adapts_and_predicts_on_raw_strings(tmp_path):
    logdir = tmp_path / "proto"
    assert main(["fewshot", "--algo", "protonet", "--dataset", "banking77", "--logdir", str(logdir), *SHORT]) == 0
    learner = metarl.fewshot.load_learner(logdir)
    adapted = learner.adapt(["my card has not arrived yet", "how long does a new card take to come",
                             "what is your exchange rate", "which currencies can I exchange"],
                            ["card", "card", "fx", "fx"])
    assert list(adapted.predict(["when will my card come?", "the rate for dollars to euros"])) == ["card", "fx"]
    with pytest.raises(ValueError, match="list of strings"):
        adapted.predict([1, 2])


@requires_extra("text")
def test_frozen_encoder_baseline_on_a_users_csv(tmp_path, capsys):
    """``--iterations 0`` meta-tests the frozen encoder's class-mean prototypes; a frozen encoder cannot train."""
    verbs = ("cancel", "block", "renew", "order", "close", "replace")
    things = ("card", "loan", "account", "transfer", "pin", "statement", "mortgage", "cheque", "insurance", "savings")
    suffixes = ("", "today", "quickly", "thanks", "asap", "for me", "please", "right away", "if possible", "now")
    rows = [(f"please {verb} my {thing} {suffix}", f"{verb}_{thing}") for verb in verbs for thing in things
            for suffix in suffixes]  # 60 intents x 10 sentences: 20 held-out intents
    data = tmp_path / "intents.csv"
    data.write_text("text,label\n" + "\n".join(f"{t},{c}" for t, c in rows) + "\n")
    logdir = tmp_path / "frozen"
    assert main(["fewshot", "--algo", "protonet", "--dataset", "text", "--data", str(data), "--encoder", "minilm",
                 "--iterations", "0", "--metatest-tasks", "10", "--metatest-queries", "3", "--logdir", str(logdir),
                 "--no-progress"]) == 0
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["encoder"] == "minilm" and result["accuracy"]["5w1s"] > 0.5
    code = main(["fewshot", "--algo", "protonet", "--dataset", "text", "--data", str(data), "--encoder", "minilm",
                 "--iterations", "1", "--metatest-queries", "3", "--logdir", str(tmp_path / "x"), "--no-progress"])
    assert code == 2 and "nothing to meta-train" in capsys.readouterr().err


def test_text_settings_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["fewshot", "--algo", "protonet", "--dataset", "text", "--logdir", str(tmp_path / "a")]) == 2
    assert "give --data PATH" in capsys.readouterr().err
    assert main(["fewshot", "--algo", "mann", "--dataset", "banking77", "--logdir", str(tmp_path / "b")]) == 2
    assert "use protonet, maml or fomaml" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "wordllama", None)
    assert main(["fewshot", "--algo", "protonet", "--dataset", "banking77", "--logdir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'metarl[text]'" in err and "Traceback" not in err


def _intents_csv(path, intents: int, per_intent: int = 20, blank_row: str | None = None):
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
             "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"]
    rows = ["text,label"]
    for i in range(intents):
        rows += [f"please {words[i % 20]} {words[j % 20]} number {j},intent_{i}" for j in range(per_intent)]
    if blank_row is not None:
        rows.insert(5, blank_row)
    path.write_text("\n".join(rows) + "\n")
    return path


@requires_extra("text")
def test_a_small_user_file_is_tested_on_the_settings_it_has_intents_for(tmp_path, capsys):
    run = tmp_path / "run"
    small = _intents_csv(tmp_path / "small.csv", 18)  # 6 held-out intents: 5-way yes, 20-way no
    assert main(["fewshot", "--algo", "protonet", "--dataset", "text", "--data", str(small), "--iterations", "0",
                 "--metatest-tasks", "5", "--metatest-queries", "5", "--logdir", str(run), "--no-progress"]) == 0
    result = json.loads((run / "metatest.json").read_text())
    assert set(result["accuracy"]) == {"5w1s", "5w5s"} and "20w1s" in result["settings_skipped"]
    assert "20w1s: not tested" in capsys.readouterr().out
    tiny = _intents_csv(tmp_path / "tiny.csv", 9)  # 3 held out: nothing fits
    assert main(["fewshot", "--algo", "protonet", "--dataset", "text", "--data", str(tiny), "--iterations", "0",
                 "--logdir", str(tmp_path / "tiny"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "need 5 held-out classes" in err and "has 3 classes: give at least 15 classes" in err


def test_a_half_blank_row_of_a_user_file_is_named(tmp_path, capsys):
    from metarl.fewshot.text import load_text_dataset

    good = load_text_dataset(_intents_csv(tmp_path / "ok.csv", 6, blank_row=","))  # an empty line is skipped
    assert good.n_classes == 6 and len(good.texts) == 120
    for row in ("hello there,", ",intent_0"):
        with pytest.raises(ValueError, match="data row 5 of .* has a blank (label|text)"):
            load_text_dataset(_intents_csv(tmp_path / "bad.csv", 6, blank_row=row))
