"""Continual meta-learning: the episodic memory, OML on the shared adaptation core, the class-incremental
protocol, the console command and the learner API (``metarl continual``, ``metarl.continual``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import metarl.adaptation
import metarl.continual
from metarl.checkpoint import CheckpointError
from metarl.cli import continual_main, main
from metarl.continual import ContinualLearner, EpisodicMemory
from metarl.continual.learner import ContinualLearner as _Learner
from tests.test_fewshot_learners import write_png_tree


@pytest.fixture(scope="module")
def png_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("omniglot")
    write_png_tree(root, {"Train_A": 8, "Train_B": 8, "Test_C": 8, "Test_D": 8}, drawers=8, seed=0)
    return root


def tiny_args(png_tree: Path, logdir: Path, method: str = "oml", iterations: int = 3, *extra: str) -> list[str]:
    return ["--method", method, "--dataset", "omniglot", "--data", str(png_tree), "--logdir", str(logdir),
            "--iterations", str(iterations), "--image-size", "14", "--hidden", "8", "--rln-layers", "2",
            "--stream-drawings", "5", "--traj-shots", "2", "--remember-size", "8", "--batch-size", "8",
            "--train-alphabets", "Train_A", "Train_B", "--test-alphabets", "Test_C", "Test_D",
            "--stream-lengths", "3", "6", "--metatest-streams", "2", "--lr-streams", "1",
            "--lr-candidates", "0.01", "0.001", "--iid-epochs", "2", "--no-progress", *extra]


# ------------------------------------------------------------------ the episodic memory


def test_reservoir_keeps_every_example_with_equal_probability_and_never_exceeds_capacity():
    rng = np.random.default_rng(0)
    capacity, stream, trials = 10, 50, 4000
    kept = np.zeros(stream)
    for _ in range(trials):
        memory = EpisodicMemory(capacity, rng)
        for i in range(stream):
            memory.add(torch.tensor([[float(i)]]), torch.tensor([i]))
            assert len(memory) == min(i + 1, capacity)
        inputs, targets = memory.sample(capacity)
        assert sorted(targets.tolist()) == sorted(set(targets.tolist()))  # without replacement
        kept[targets.numpy()] += 1
    frequency = kept / trials
    # each of the 50 examples is kept with probability 10/50; a chi-square test over the examples
    expected = trials * capacity / stream
    chi2 = (((kept - expected) ** 2) / expected).sum()
    assert chi2 < 85.0, (chi2, frequency)  # 49 degrees of freedom: the 99.9% quantile is 85.4
    assert abs(frequency[:10].mean() - frequency[-10:].mean()) < 0.02  # early and late examples alike


def test_memory_batches_sampling_state_and_errors():
    memory = EpisodicMemory(5, np.random.default_rng(1))
    with pytest.raises(ValueError, match="empty"):
        memory.sample(2)
    memory.add(torch.zeros(3, 2), torch.arange(3))
    assert len(memory) == 3 and memory.sample(10)[0].shape == (3, 2)
    memory.add(torch.ones(4, 2), torch.arange(3, 7))
    assert len(memory) == 5 and memory.seen == 7
    copy = EpisodicMemory(5, np.random.default_rng(1))
    copy.load_state_dict(memory.state_dict())
    assert torch.equal(copy.sample(5)[1].sort().values, memory.sample(5)[1].sort().values)
    with pytest.raises(ValueError, match="do not fit"):
        memory.add(torch.zeros(1, 3), torch.zeros(1))
    with pytest.raises(ValueError, match="non-negative"):
        EpisodicMemory(-1)


# ------------------------------------------------------------------ OML on the shared core


def test_oml_inner_loop_is_the_cores_and_first_order_switches_it(png_tree, tmp_path, monkeypatch):
    """A meta-iteration takes traj_classes * traj_shots single-example steps through metarl.adaptation."""
    from metarl.continual.algorithm import ContinualLearning
    from metarl.registry import make_algorithm

    calls = []
    real = metarl.adaptation.gradient_step

    def spy(loss_fn, params, batch, step_size, *, first_order=False):
        calls.append((batch[1].shape, first_order, step_size))
        return real(loss_fn, params, batch, step_size, first_order=first_order)

    monkeypatch.setattr(metarl.adaptation, "gradient_step", spy)
    settings = dict(dataset="omniglot", data=str(png_tree), image_size=14, hidden=8, rln_layers=2, stream_drawings=5,
                    traj_classes=3, traj_shots=2, remember_size=8, train_alphabets=("Train_A", "Train_B"),
                    test_alphabets=("Test_C",), inner_lr=0.05, stream_lengths=(2,))
    algorithm = make_algorithm("oml", **settings)
    assert isinstance(algorithm, ContinualLearning)
    before = {k: v.clone() for k, v in algorithm.network.rln.state_dict().items()}
    algorithm.meta_train_step(np.random.default_rng(0))
    assert calls == [((1,), False, 0.05)] * 6  # one example per step, second order
    assert any(not torch.equal(before[k], v) for k, v in algorithm.network.rln.state_dict().items())
    calls.clear()
    make_algorithm("oml", **settings, first_order=True).meta_train_step(np.random.default_rng(0))
    assert calls == [((1,), True, 0.05)] * 6


def test_oml_meta_gradient_reaches_the_representation_through_every_inner_step():
    """Second-order OML differs from first-order exactly by the terms through the inner gradients."""
    from metarl.adaptation import adapt_sequence

    torch.manual_seed(0)
    rln = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU())
    params = {"weight": torch.randn(3, 6, requires_grad=True), "bias": torch.zeros(3, requires_grad=True)}
    x, y = torch.randn(5, 4), torch.tensor([0, 0, 1, 1, 2])

    def loss_fn(p, batch):
        f, t = batch
        return torch.nn.functional.cross_entropy(f @ p["weight"].T + p["bias"], t)

    grads = {}
    for first_order in (False, True):
        f = rln(x)
        adapted = adapt_sequence(loss_fn, params, (f[:, None], y[:, None]), step_size=0.5, first_order=first_order)
        grads[first_order] = torch.autograd.grad(loss_fn(adapted, (rln(x), y)), list(rln.parameters()))
    # by hand: the same steps with autograd's create_graph
    f = rln(x)
    w, b = params["weight"], params["bias"]
    for k in range(5):
        gw, gb = torch.autograd.grad(loss_fn({"weight": w, "bias": b}, (f[k:k + 1], y[k:k + 1])), [w, b],
                                     create_graph=True)
        w, b = w - 0.5 * gw, b - 0.5 * gb
    by_hand = torch.autograd.grad(loss_fn({"weight": w, "bias": b}, (rln(x), y)), list(rln.parameters()))
    for g, h in zip(grads[False], by_hand):
        torch.testing.assert_close(g, h)
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(grads[False], grads[True]))


# ------------------------------------------------------------------ the protocol


def test_streams_are_single_pass_class_ordered_and_the_same_for_every_method(png_tree, tmp_path, monkeypatch):
    seen: list[tuple[str, tuple]] = []
    real = _Learner.learn

    def record(self, x, y):
        seen.append((self.method, tuple(y)))
        return real(self, x, y)

    monkeypatch.setattr(_Learner, "learn", record)
    result = continual_main(tiny_args(png_tree, tmp_path / "pre", "pretrain", 2, "--lr-candidates", "0.01"))
    assert set(result["methods"]) == {"pretrain", "finetune", "er", "iid"}
    # per method: 2 lengths x (1 selection + 2 test streams); each stream shows every class's 5 drawings in a block
    for method in ("pretrain", "finetune", "er"):
        labels = [y[0] for m, y in seen if m == method]
        streams, start = [], 0
        for length in (3, 3, 3, 6, 6, 6):
            streams.append(labels[start:start + 5 * length])
            start += 5 * length
        assert start == len(labels)
        for stream in streams:
            blocks = [stream[i:i + 5] for i in range(0, len(stream), 5)]
            assert all(len(set(b)) == 1 for b in blocks) and len({b[0] for b in blocks}) == len(blocks)
    by_method = {m: [y for mm, y in seen if mm == m] for m in ("pretrain", "finetune", "er")}
    assert by_method["pretrain"] == by_method["finetune"] == by_method["er"]


def test_learning_rate_is_chosen_without_the_test_alphabets(png_tree, tmp_path):
    a = continual_main(tiny_args(png_tree, tmp_path / "a", "oml", 2, "--test-alphabets", "Test_C"))
    b = continual_main(tiny_args(png_tree, tmp_path / "b", "oml", 2, "--test-alphabets", "Test_D"))
    for method in a["methods"]:
        assert a["methods"][method]["lr_search"] == b["methods"][method]["lr_search"]
        assert a["methods"][method]["generalisation"] != b["methods"][method]["generalisation"]


# ------------------------------------------------------------------ the command and the learner API


def test_continual_command_writes_the_run_and_resumes(png_tree, tmp_path):
    logdir = tmp_path / "oml"
    assert main(["continual", *tiny_args(png_tree, logdir, "oml", 2)]) == 0
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["algo"] == "oml" and set(result["methods"]) == {"oml", "oml-er", "iid"}
    for entry in result["methods"].values():
        assert set(entry["generalisation"]) == {"3", "6"} and set(entry["lr"]) == {"3", "6"}
        assert 0.0 <= entry["generalisation"]["6"]["mean"] <= 1.0
    assert (logdir / "continual.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (logdir / "checkpoint.pt").is_file() and (logdir / "config.yaml").is_file()
    resumed = continual_main(["--resume", str(logdir), "--iterations", "4", "--no-progress"])
    assert resumed["iterations"] == 4
    with pytest.raises(ValueError, match="cannot change inner_lr"):
        continual_main(["--resume", str(logdir), "--inner-lr", "0.5", "--no-progress"])
    retested = continual_main(["--resume", str(logdir), "--eval-methods", "oml", "--no-progress"])
    assert set(retested["methods"]) == {"oml"}


def test_continual_errors_are_one_line(png_tree, tmp_path, capsys):
    assert main(["continual", "--method", "nope"]) == 2
    assert "unknown algorithm 'nope'" in capsys.readouterr().err
    assert main(["continual", *tiny_args(png_tree, tmp_path / "x", "oml", 1, "--eval-methods", "er")]) == 2
    assert "evaluate them from a er run" in capsys.readouterr().err
    assert main(["continual", *tiny_args(png_tree, tmp_path / "y", "oml", 1, "--stream-lengths", "50")]) == 2
    assert "--stream-lengths 50 exceeds the 16 held-out classes" in capsys.readouterr().err
    assert main(["continual", *tiny_args(tmp_path / "missing", tmp_path / "z", "oml", 1)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["continual", *tiny_args(png_tree, tmp_path / "w", "oml", 1, "--traj-classes", "99")]) == 2
    assert "--traj-classes 99 exceeds" in capsys.readouterr().err
    assert main(["continual", *tiny_args(png_tree, tmp_path / "v", "oml", 1, "--test-alphabets", "Train_A")]) == 2
    assert "never seen in training" in capsys.readouterr().err
    assert main(["continual", *tiny_args(png_tree, tmp_path / "u", "oml", 1, "--lr-candidates", "0")]) == 2
    assert "lr_candidates" in capsys.readouterr().err


def test_load_learner_learns_new_labels_online_from_pngs(png_tree, tmp_path):
    import shutil

    logdir, data = tmp_path / "oml", tmp_path / "data"
    shutil.copytree(png_tree, data)
    continual_main(tiny_args(data, logdir, "oml", 2))
    shutil.rmtree(data)  # loading a learner needs the checkpoint, not the training data
    learner = metarl.continual.load_learner(logdir)
    assert learner.method == "oml" and not learner.train_rln and learner.memory is None
    folder = png_tree / "images_background" / "Test_C"
    images = {f"char{c}": [np.asarray(Image.open(p)) for p in sorted((folder / f"character{c:02d}").glob("*.png"))]
              for c in (1, 2, 3)}
    assert images["char1"][0].shape == (105, 105) and images["char1"][0].dtype == bool
    for label, drawings in images.items():            # class after class, one example at a time
        for image in drawings[:5]:
            learner.learn(image, label)
    assert learner.classes == ["char1", "char2", "char3"]
    predicted = learner.predict([d for drawings in images.values() for d in drawings[:5]])
    assert set(predicted) <= {"char1", "char2", "char3"} and predicted.shape == (15,)
    er = metarl.continual.load_learner(logdir, method="oml-er", memory_capacity=4, lr=0.01)
    er.update((images["char1"][:3], ["a", "a", "a"]))
    er.update((images["char2"][:3], ["b", "b", "b"]))
    assert len(er.memory) == 4 and er.classes == ["a", "b"] and er.lr == 0.01
    with pytest.raises(ValueError, match="no episodic memory"):
        learner.update((images["char1"][:1], ["char1"]))
    fresh = metarl.continual.load_learner(None, dataset="omniglot")
    fresh.learn(images["char1"][0], 7)
    assert list(fresh.predict(images["char1"][:2])) == [7, 7]
    with pytest.raises(CheckpointError, match="no checkpoint"):
        metarl.continual.load_learner(tmp_path / "nothing")


def test_learner_grows_rows_and_keeps_adam_state():
    learner = ContinualLearner(torch.nn.Identity(), 4, lr=0.1, seed=0)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 4)) * 3
    for label in range(20):  # more labels than the initial 8 rows
        learner.learn(torch.tensor(centres[label:label + 1], dtype=torch.float32), [label])
    assert len(learner.classes) == 20 and learner.weight.shape[0] >= 20
    assert learner.outputs(torch.zeros(2, 4)).shape == (2, 20)
    with pytest.raises(ValueError, match="1 labels"):
        learner.learn(torch.zeros(2, 4), [1])


def test_sinusoid_run_and_regression_learner(tmp_path):
    logdir = tmp_path / "sin"
    result = continual_main(["--method", "oml", "--dataset", "sinusoid", "--iterations", "3", "--hidden", "16",
                             "--rln-layers", "2", "--sine-functions", "3", "--sine-batches", "4", "--traj-classes",
                             "3", "--traj-shots", "2", "--batch-size", "4", "--remember-size", "4",
                             "--metatest-streams", "2", "--lr-streams", "1", "--lr-candidates", "1e6", "0.003",
                             "--logdir", str(logdir), "--no-progress"])
    for method in ("oml", "oml-er", "iid"):
        entry = result["methods"][method]
        assert set(entry["mse_by_functions"]) == {"1", "2", "3"} and entry["mse"]["mean"] > 0
        # a diverging candidate scores an infinite MSE and is passed over, without stopping the meta-test
        assert entry["lr_search"]["1000000.0"] == float("inf") and entry["lr"] == 0.003
    learner = metarl.continual.load_learner(logdir)
    x = np.zeros((5, 4), dtype=np.float32)
    x[:, 0], x[:, -1] = 1.0, np.linspace(-1, 1, 5)
    learner.learn(x, np.sin(x[:, -1]))
    assert learner.predict(x).shape == (5,)


@pytest.mark.slow
def test_oml_beats_pretraining_on_a_small_stream(png_tree, tmp_path):
    """A short learning check: OML's representation, learned online, beats pretraining's on the same streams."""
    common = ["--iterations", "400", "--hidden", "16", "--outer-lr", "1e-3", "--stream-lengths", "8",
              "--metatest-streams", "4", "--lr-candidates", "0.01", "0.001", "--eval-methods"]
    oml = continual_main([*tiny_args(png_tree, tmp_path / "oml", "oml", 400), *common, "oml"])
    pre = continual_main([*tiny_args(png_tree, tmp_path / "pre", "pretrain", 400), *common, "pretrain"])
    assert oml["methods"]["oml"]["generalisation"]["8"]["mean"] > pre["methods"]["pretrain"]["generalisation"]["8"]["mean"]


def test_table_script_merges_runs_into_one_table_and_figure(png_tree, tmp_path):
    from tests.conftest import load_script

    runs = []
    for method, seed in (("oml", 0), ("oml", 1), ("pretrain", 0)):
        runs.append(tmp_path / f"{method}-{seed}")
        continual_main(tiny_args(png_tree, runs[-1], method, 1, "--seed", str(seed), "--lr-candidates", "0.01"))
    table = load_script("continual_table").main([*map(str, runs), "-o", str(tmp_path / "all.png")])
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == {"oml", "oml-er", "pretrain", "finetune", "er", "iid (oml)", "iid (pretrain)"}
    assert rows["oml"].split("|")[2].strip() == "2" and rows["pretrain"].split("|")[2].strip() == "1"
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"


def test_same_seed_same_run_also_across_resume(png_tree, tmp_path):
    straight = continual_main(tiny_args(png_tree, tmp_path / "a", "oml", 4))
    continual_main(tiny_args(png_tree, tmp_path / "b", "oml", 2))
    resumed = continual_main(["--resume", str(tmp_path / "b"), "--iterations", "4", "--no-progress"])
    assert straight["methods"] == resumed["methods"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["algorithm"]["network"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["algorithm"]["network"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_inputs_are_one_line_and_the_memory_gives_back_what_it_was_given():
    from metarl.continual import EpisodicMemory

    learner = metarl.continual.load_learner(dataset="sinusoid")
    with pytest.raises(ValueError, match=r"inputs of shape \(5,\) do not fit this learner's representation"):
        learner.predict(np.zeros(5))
    memory = EpisodicMemory(10, np.random.default_rng(0))
    memory.add(np.zeros((3, 4), dtype=np.float32), np.array([1, 2, 3]))
    x, y = memory.sample(2)
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.shape == (2, 4)
    tensors = EpisodicMemory(10, np.random.default_rng(0))
    tensors.add(torch.zeros(3, 4), torch.tensor([1, 2, 3]))
    assert isinstance(tensors.sample(2)[0], torch.Tensor)


def test_one_colour_image_is_one_example_as_for_the_few_shot_learners():
    learner = metarl.continual.load_learner(dataset="omniglot")
    rng = np.random.default_rng(0)
    for channels in (3, 2, 4):
        image = rng.random((105, 105, channels))
        learner.learn(image, f"class-{channels}")
        assert learner.predict(image).shape == (1,), "one (H, W, C) image is one image, not H of them"
    assert learner.predict(np.stack([image, image])).shape == (2,)
    with pytest.raises(ValueError, match="images must be"):
        learner.predict(np.zeros((2, 3, 105, 105, 1)))


def test_stream_lengths_beyond_the_held_out_classes_are_refused_before_training(tmp_path, capsys):
    from metarl.cli import main
    from tests.conftest import SHARED_OMNIGLOT

    if not SHARED_OMNIGLOT.is_dir():
        pytest.skip("needs ../shared/data/omniglot")
    assert main(["continual", "--algo", "oml", "--dataset", "omniglot", "--stream-lengths", "10", "150",
                 "--logdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--stream-lengths 150 exceeds the 106 held-out classes" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
