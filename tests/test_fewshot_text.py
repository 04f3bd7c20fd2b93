"""Few-shot intent classification through ``metarl fewshot``: ProtoNets, MAML, FOMAML and the frozen-encoder
baseline on text, and a trained learner used on raw strings."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

import metarl
from metarl.cli import main
from metarl.fewshot.text import load_text_dataset, text_class_split
from tests.conftest import requires_extra
from tests.test_save_load import scalars

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
                 "--trainable-layers", "0", "--iterations", "1", "--metatest-queries", "3", "--logdir", str(tmp_path / "x"), "--no-progress"])
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


# --------------------------------------------------------------------------------------------
# several datasets, cross-domain meta-tests, encoder fine-tuning options


@requires_extra("text")
def test_several_datasets_train_together_and_each_is_meta_tested(tmp_path):
    logdir = tmp_path / "both"
    assert main(["fewshot", "--algo", "protonet", "--dataset", "clinc150", "banking77", "--logdir", str(logdir),
                 *SHORT]) == 0
    result = json.loads((logdir / "metatest.json").read_text())
    assert set(result["accuracy"]) == {f"{d}/{k}" for d in ("clinc150", "banking77") for k in ("5w1s", "5w5s", "20w1s")}
    assert result["test_datasets"] == ["clinc150", "banking77"]
    for dataset in ("clinc150", "banking77"):
        assert result["test_intents"][dataset] == list(text_class_split(load_text_dataset(dataset), dataset)[1].class_names)
    assert yaml.safe_load((logdir / "config.yaml").read_text())["dataset"] == ["clinc150", "banking77"]
    learner = metarl.fewshot.load_learner(logdir)  # the Python API on raw strings, as for one dataset
    adapted = learner.adapt(["my card has not arrived", "what is the exchange rate"], ["card", "fx"])
    assert list(adapted.predict(["when will my new card come?"])) == ["card"]


@requires_extra("text")
def test_a_cross_domain_meta_test_uses_the_other_datasets_own_episodes(tmp_path):
    """Trained on CLINC150, tested on BANKING77's held-out intents: with a frozen encoder the accuracy is exactly a
    BANKING77 run's (the same episodes), whatever the training dataset."""
    common = ["--algo", "protonet", "--iterations", "0", "--metatest-tasks", "30", "--no-progress"]
    assert main(["fewshot", "--dataset", "clinc150", "--test-datasets", "banking77", *common,
                 "--logdir", str(tmp_path / "cross")]) == 0
    assert main(["fewshot", *common, "--dataset", "banking77", "--logdir", str(tmp_path / "own")]) == 0
    cross, own = (json.loads((tmp_path / d / "metatest.json").read_text()) for d in ("cross", "own"))
    assert cross["test_datasets"] == ["banking77"] and cross["test_intents"] == own["test_intents"]
    assert cross["accuracy"] == own["accuracy"]


@requires_extra("text")
def test_a_users_file_trains_beside_the_shared_datasets_in_any_flag_order(tmp_path):
    data = _intents_csv(tmp_path / "mine.csv", 30)
    for i, args in enumerate((["--dataset", "banking77", "text", "--data", str(data)],
                              ["--data", str(data), "--dataset", "banking77", "text"])):
        logdir = tmp_path / f"run{i}"
        assert main(["fewshot", "--algo", "protonet", *args, "--logdir", str(logdir), *SHORT]) == 0
        result = json.loads((logdir / "metatest.json").read_text())
        assert result["test_datasets"] == ["banking77", "text"] and "text/5w1s" in result["accuracy"]
        assert len(result["test_intents"]["text"]) == 10


def test_several_datasets_errors_are_one_line(tmp_path, capsys):
    cases = [(["--dataset", "omniglot", "banking77"], "only text datasets train together"),
             (["--dataset", "banking77", "banking77"], "names a dataset twice"),
             (["--dataset", "omniglot", "--test-datasets", "banking77"], "--test-datasets chooses held-out intents"),
             (["--dataset", "banking77", "clinc150", "--data", "x.csv"], "add text to them"),
             (["--dataset", "banking77", "--test-datasets", "text"], "give --data PATH"),
             (["--dataset", "banking77", "--test-datasets", "hwu64"], "invalid choice: 'hwu64'")]
    for args, message in cases:
        assert main(["fewshot", "--algo", "protonet", *args, "--logdir", str(tmp_path / "x")]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)


def test_episodes_of_pooled_datasets_draw_their_classes_from_one():
    import numpy as np

    from metarl.fewshot.data import EpisodicSampler

    labels = np.repeat(np.arange(12), 4)
    groups = (labels >= 5).astype(int)  # classes 0-4 and 5-11
    sampler = EpisodicSampler(labels, ways=5, shots=1, queries=1, groups=groups)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        classes = sampler.sample(rng).classes
        assert len(set(classes >= 5)) == 1
        seen.add(bool(classes[0] >= 5))
    assert seen == {True, False}
    with pytest.raises(ValueError, match="draws its classes from one dataset"):
        EpisodicSampler(labels, ways=6, shots=1, queries=1, groups=groups)


@requires_extra("text")
def test_lora_and_the_frozen_distance_start_at_the_pretrained_encoder():
    import torch

    from metarl.fewshot.text_encoders import LoRALinear, MiniLMEncoder, WordLlamaEncoder

    frozen, lora = MiniLMEncoder(), MiniLMEncoder(trainable_layers=2, lora_rank=4)
    ids = frozen.tokenize(["how do I top up my card", "set an alarm for six"])
    assert torch.allclose(frozen(ids), lora(ids), atol=1e-6)
    trained = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n and n.startswith(("encoder.layer.4.", "encoder.layer.5.")) for n in trained)
    assert sum(isinstance(m, LoRALinear) for m in lora.modules()) == 12
    assert float(lora.distance_from_pretrained().detach()) == 0.0
    with torch.no_grad():
        next(m for m in lora.modules() if isinstance(m, LoRALinear)).lora_b.fill_(0.01)
    assert float(lora.distance_from_pretrained().detach()) > 0 and not torch.allclose(frozen(ids), lora(ids), atol=1e-6)
    full = MiniLMEncoder(trainable_layers=1)
    with torch.no_grad():
        full.encoder.layer[5].output.dense.bias.add_(0.5)
    assert abs(float(full.distance_from_pretrained().detach()) - 0.25 * 384) < 1e-3
    words = WordLlamaEncoder()
    ids = words.tokenize(["my card"])
    distance = words.distance_from_pretrained(ids)
    distance.backward()
    assert float(distance.detach()) == 0.0 and words.embedding.weight.grad.is_sparse


@requires_extra("text")
def test_the_frozen_distance_penalty_trains_and_is_logged(tmp_path):
    logdir = tmp_path / "l2sp"
    assert main(["fewshot", "--algo", "protonet", "--dataset", "banking77", "--frozen-distance", "0.1",
                 "--logdir", str(logdir), *SHORT]) == 0
    assert len(scalars(logdir, "train/distance_from_pretrained")) == 2


def test_the_text_presets_follow_the_encoder_in_any_flag_order():
    """``--dataset clinc150 banking77 --encoder minilm`` alone trains the preset's MiniLM learner, as the Python API
    does; WordLlama keeps its own."""
    from metarl.launcher import resolve_run
    from metarl.registry import resolve_config

    minilm = {"trainable_layers": 6, "ways": 50, "metric_scale": 10.0, "outer_lr": 2e-5, "iterations": 200}
    for argv in (["--dataset", "clinc150", "banking77", "--encoder", "minilm"],
                 ["--encoder", "minilm", "--dataset", "banking77", "clinc150"],
                 ["--encoder", "minilm", "--algo", "protonet", "--dataset", "banking77"]):
        _, config, _, _ = resolve_run("fewshot", ["--algo", "protonet", *argv])
        assert {k: getattr(config, k) for k in minilm} == minilm, argv
    _, config, _, _ = resolve_run("fewshot", ["--algo", "protonet", "--dataset", "clinc150", "banking77",
                                              "--encoder", "minilm", "--ways", "20"])
    assert config.ways == 20 and config.trainable_layers == 6, "a flag still overrides the variant"
    _, config, _, _ = resolve_run("fewshot", ["--algo", "protonet", "--dataset", "clinc150", "banking77"])
    assert (config.encoder, config.trainable_layers, config.ways, config.metric_scale) == ("wordllama", 0, 5, 3.0)
    api = resolve_config("protonet", settings={"dataset": ["clinc150", "banking77"], "encoder": "minilm"})
    assert {k: getattr(api, k) for k in minilm} == minilm and api.dataset == ("clinc150", "banking77")


@requires_extra("text")
def test_a_run_on_several_datasets_resumes_exactly_and_refuses_other_datasets(tmp_path, capsys):
    common = ["fewshot", "--algo", "protonet", "--dataset", "clinc150", "banking77", "--metatest-tasks", "20",
              "--checkpoint-every", "2", "--meta-batch-size", "2", "--no-progress"]
    assert main([*common, "--iterations", "4", "--logdir", str(tmp_path / "straight")]) == 0
    assert main([*common, "--iterations", "2", "--logdir", str(tmp_path / "resumed")]) == 0
    assert main(["fewshot", "--resume", str(tmp_path / "resumed"), "--dataset", "banking77", "--no-progress"]) == 2
    assert "cannot change dataset" in capsys.readouterr().err
    assert main(["fewshot", "--resume", str(tmp_path / "resumed"), "--iterations", "4", "--no-progress"]) == 0
    straight, resumed = (json.loads((tmp_path / d / "metatest.json").read_text())["accuracy"]
                         for d in ("straight", "resumed"))
    assert straight == resumed


def test_a_run_saved_with_one_dataset_name_loads_as_before():
    from metarl.config import config_from_dict
    from metarl.fewshot.config import FewShotConfig

    assert config_from_dict(FewShotConfig, {"dataset": "banking77"}).dataset == ("banking77",)
    assert FewShotConfig(dataset="omniglot").kind == "omniglot"


@requires_extra("text")
def test_load_learner_predicts_any_number_of_raw_sentences_in_batches(tmp_path):
    """The third-domain call: ``load_learner(DIR).adapt(texts, labels).predict(texts)`` tokenises, truncates and
    batches inside; many sentences at once give what one at a time gives."""
    logdir = tmp_path / "proto"
    assert main(["fewshot", "--algo", "protonet", "--dataset", "clinc150", "banking77", "--logdir", str(logdir),
                 *SHORT]) == 0
    data = load_text_dataset("clinc150")
    texts, labels = list(data.texts[::50]), [data.class_names[i] for i in data.labels[::50]]
    adapted = metarl.fewshot.load_learner(logdir).adapt(texts[:40], labels[:40])
    queries = texts[40:] + ["word " * 500]  # longer than the encoder's max_length
    together = adapted.predict(queries)
    assert len(together) == len(queries)
    assert list(together[:20]) == [adapted.predict([q])[0] for q in queries[:20]]
