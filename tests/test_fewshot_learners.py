"""Few-shot learners: a short learning check each, determinism and resume, the training script, and
``load_learner`` on raw PNG arrays.

Learning checks run on small synthetic "characters" (random binary patterns, jittered and noisy per
example) at 14x14 so that they take seconds; the end-to-end tests read PNG trees like Omniglot's.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.func import vmap

import metarl.fewshot
from metarl.adaptation import adapt_batch, functional_forward, parameters_of
from metarl.checkpoint import CheckpointError
from metarl.fewshot.data import EpisodicSampler
from metarl.fewshot.algorithms import FewShotClassification, MANNMetaLearning, SinusoidMetaLearning
from metarl.fewshot.learners import classifier_query_logits
from metarl.fewshot.networks import MANN, ConvClassifier, LSTMBaseline
from metarl.fewshot.omniglot import LabelledImages
from metarl.cli import fewshot_main
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.sinusoid import SinusoidTasks
from metarl.registry import resolve_config
from metarl.training import run_meta_training

from tests.conftest import SHARED_OMNIGLOT


def synthetic_characters(classes: int, per_class: int, size: int, seed: int) -> LabelledImages:
    """Each class a random binary pattern; each example shifted by up to a pixel with 3% flipped pixels."""
    g = torch.Generator().manual_seed(seed)
    base = (torch.rand(classes, 1, size, size, generator=g) < 0.25).float()
    images = base.repeat_interleave(per_class, 0)
    shifts = torch.randint(-1, 2, (len(images), 2), generator=g)
    images = torch.stack([torch.roll(im, tuple(s.tolist()), dims=(1, 2)) for im, s in zip(images, shifts)])
    images = torch.where(torch.rand(images.shape, generator=g) < 0.03, 1 - images, images)
    return LabelledImages(images, torch.arange(classes).repeat_interleave(per_class), tuple(map(str, range(classes))))


def fewshot_config(algo: str, **settings) -> FewShotConfig:
    """The settings ``metarl fewshot --algo ALGO`` would use with these flags (the preset under them)."""
    return resolve_config(algo, FewShotConfig, settings)


def classifier_settings(method: str, **overrides) -> FewShotConfig:
    # 14x14 images are too small for four max-pooling blocks: the small tests use the stride-2 Conv-4
    values = dict(dataset="omniglot", image_size=14, meta_batch_size=4, metatest_queries=3,
                  metatest_tasks=10, metatest_chunk=5, downsample="stride")
    if method == "protonet":
        values.update(ways=5, meta_batch_size=2)
    values.update(overrides)
    return fewshot_config(method, **values)


def held_out_accuracy(algorithm: FewShotClassification, data: LabelledImages) -> float:
    batch = EpisodicSampler(data.labels, ways=5, shots=1, queries=3).sample_batch(
        data.images, np.random.default_rng(5), 20)
    algorithm.module.eval()
    with torch.no_grad():
        logits = classifier_query_logits(algorithm.module, batch, 5, steps=algorithm.settings.metatest_steps,
                                         first_order=True)
    algorithm.module.train()
    return float((logits.argmax(-1) == batch.query_labels).float().mean())


# ------------------------------------------------------------------------------- learning checks


@pytest.mark.slow
@pytest.mark.parametrize("method", ["maml", "fomaml", "metasgd"])
def test_sinusoid_learners_reduce_the_post_adaptation_error(method):
    settings = fewshot_config(method, dataset="sinusoid", metatest_tasks=200)
    algorithm = SinusoidMetaLearning(settings, method)
    before = algorithm.meta_test()["mse_by_step"]["1"]
    rng = np.random.default_rng(0)
    for _ in range(300):
        algorithm.meta_train_step(rng)
    after = algorithm.meta_test()["mse_by_step"]["1"]
    assert after < 0.85 * before, (before, after)


@pytest.mark.slow
@pytest.mark.parametrize("method,iterations", [("maml", 40), ("fomaml", 40), ("metasgd", 40), ("protonet", 120)])
def test_episodic_classifiers_learn_new_classes(method, iterations):
    train, test = synthetic_characters(40, 12, 14, seed=0), synthetic_characters(24, 12, 14, seed=1)
    algorithm = FewShotClassification(classifier_settings(method), method, train, test)
    before = held_out_accuracy(algorithm, test)
    rng = np.random.default_rng(0)
    for _ in range(iterations):
        metrics = algorithm.meta_train_step(rng)
    after = held_out_accuracy(algorithm, test)
    assert after > before + 0.1, (before, after)
    assert metrics["samples"] > 0 and np.isfinite(metrics["train/query_loss"])


def test_meta_sgd_learns_its_step_sizes():
    train, test = synthetic_characters(20, 8, 14, seed=0), synthetic_characters(20, 8, 14, seed=1)
    algorithm = FewShotClassification(classifier_settings("metasgd"), "metasgd", train, test)
    step_sizes = algorithm.module.step_sizes
    initial = {n: p.detach().clone() for n, p in step_sizes.as_dict().items()}
    algorithm.meta_train_step(np.random.default_rng(0))
    # every step size is an outer-loop parameter with a meta-gradient...
    assert all(p.grad is not None for p in step_sizes.parameters())
    # ...and the output layer's (the only one with an inner gradient while the output layer is still
    # zero) moved; the others follow once the output layer has grown
    assert not torch.equal(initial["head_weight"], step_sizes.as_dict()["head_weight"].detach())


@pytest.mark.parametrize("method, activation, steps, multi_step", [
    ("maml", "relu", 1, False), ("maml", "tanh", 3, True), ("fomaml", "relu", 2, False), ("metasgd", "relu", 2, True)])
def test_closed_form_mlp_inner_steps_equal_the_generic_core(method, activation, steps, multi_step):
    """A regression MLP's closed-form inner steps (metarl.mlp_gradients) give the generic core's query loss,
    outputs and meta-gradient (MAML, FOMAML, Meta-SGD; one or several steps; ReLU and Tanh)."""
    from metarl.fewshot.learners import GradientLearner
    from metarl.mlp_gradients import mlp_layout
    from metarl.networks import mlp

    torch.manual_seed(0)
    learner = GradientLearner(mlp(1, (16, 16), 1, activation=activation), method, 0.05, task="regression")
    assert learner._mlp is not None and learner._mlp.layout == mlp_layout(learner.net)
    batch = SinusoidTasks().sample(np.random.default_rng(0), 6, 5, 7)
    results = []
    for closed_form in (learner._mlp, None):
        learner._mlp = closed_form
        learner.zero_grad()
        loss, outputs = learner.query_loss(batch.support_inputs, batch.support_labels, batch.query_inputs,
                                           batch.query_labels, steps=steps, multi_step=multi_step)
        loss.backward()
        tested = learner.adapted_outputs(batch.support_inputs, batch.support_labels, batch.query_inputs, steps=steps)
        grads = [p.grad.clone() for p in learner.parameters()]
        results.append((loss.detach(), outputs.detach(), tested.detach(), grads))
    (loss_a, out_a, test_a, grads_a), (loss_b, out_b, test_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(test_a, test_b, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert mlp_layout(ConvClassifier(image_size=16, hidden=8)) is None  # conv nets keep the generic core


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_conv_classifier_vmapped_adaptation_equals_the_task_loop(downsample):
    """Batch norm without running statistics under vmap: same adapted weights and meta-gradient as a loop."""
    net = ConvClassifier(image_size=16, hidden=8, generator=torch.Generator().manual_seed(0), downsample=downsample)
    data = synthetic_characters(10, 4, 16, seed=2)
    batch = EpisodicSampler(data.labels, ways=3, shots=1, queries=2).sample_batch(
        data.images, np.random.default_rng(0), 3)

    def loss(params, task):
        x, y = task
        return F.cross_entropy(functional_forward(net, params, x), y)

    grads = []
    for vectorize in (True, False):
        net.zero_grad()
        params = net.task_parameters(parameters_of(net), 3)
        adapted = adapt_batch(loss, params, (batch.support_inputs, batch.support_labels), steps=2, step_size=0.3,
                              vectorize=vectorize)
        vmap(loss)(adapted, (batch.query_inputs, batch.query_labels)).mean().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_mann_and_lstm_shapes_and_presentation_counts():
    train, test = synthetic_characters(12, 10, 14, seed=0), synthetic_characters(12, 10, 14, seed=1)
    settings = fewshot_config("mann", dataset="omniglot", image_size=14, meta_batch_size=2,
                              controller_size=16, memory_slots=8, memory_width=4, read_heads=2,
                              metatest_tasks=4, metatest_chunk=2)
    algorithm = MANNMetaLearning(settings, "mann", train, test)
    inputs, previous, labels, presentation = algorithm.sequences(train, algorithm.sampler, np.random.default_rng(0), 2)
    assert inputs.shape == (2, 50, 14 * 14) and previous.shape == (2, 50, 5)
    assert previous[:, 0].abs().sum() == 0                                       # no label before the first step
    torch.testing.assert_close(previous[:, 1:].argmax(-1), labels[:, :-1])          # label of the previous step
    for k in range(1, 11):
        assert ((presentation == k).sum(1) == 5).all()                              # every class shown 10 times
    for model in algorithm.module.models.values():
        assert model(inputs, previous).shape == (2, 50, 5)
    metrics = algorithm.meta_train_step(np.random.default_rng(0))
    assert {"train/mann_loss", "train/lstm_loss"} <= set(metrics)
    result = algorithm.meta_test()
    assert set(result["per_instance_accuracy"]) == {str(k) for k in range(1, 11)}
    assert "lstm_baseline" in result


@pytest.mark.slow
def test_mann_and_lstm_fit_a_fixed_batch_of_episodes():
    """A short learning check: gradients reach every part of both sequence models (memorising 4 episodes)."""
    train = synthetic_characters(12, 10, 14, seed=0)
    settings = fewshot_config("mann", dataset="omniglot", image_size=14, controller_size=32, memory_slots=16,
                              memory_width=8, read_heads=2)
    algorithm = MANNMetaLearning(settings, "mann", train, train)
    inputs, previous, labels, _ = algorithm.sequences(train, algorithm.sampler, np.random.default_rng(0), 4)
    for model in algorithm.module.models.values():
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(40):
            loss = F.cross_entropy(model(inputs, previous).flatten(0, 1), labels.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[-1] < 0.5 * losses[0], (type(model).__name__, losses[0], losses[-1])


def test_mann_memory_is_written_to_least_used_slots():
    """Least-recently-used access: with the write gate closed, each write goes to the slots least used so far."""
    model = MANN(input_size=4, num_classes=2, controller_size=8, memory_slots=6, memory_width=3, read_heads=2,
                 generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.gate.weight.zero_()
        model.gate.bias.fill_(-30.0)   # sigmoid ~ 0: ignore the previously read slots
    state = model.initial_state(batch=1)
    image_gates = model.image_gates(torch.randn(3, 1, 4))
    written = []
    with torch.no_grad():
        for t in range(3):
            before = state.memory.clone()
            target = set(state.least_used[0].nonzero().flatten().tolist())
            state, logits = model.step(state, image_gates[t], torch.zeros(1, 2))
            changed = set(((state.memory - before).abs().sum(-1)[0] > 1e-6).nonzero().flatten().tolist())
            written.append(target)
            assert target <= changed                      # the keys went to the least-used slots
            assert len(target) == 2 and logits.shape == (1, 2)
    assert written[0] == {0, 1} and not written[1] & written[0]   # the second write avoids the slots just used
    usage = state.usage[0]
    assert set(state.least_used[0].nonzero().flatten().tolist()) == set(usage.argsort()[:2].tolist())
    baseline = LSTMBaseline(4, 2, 8, generator=torch.Generator().manual_seed(0))
    assert baseline(torch.randn(3, 5, 4), torch.zeros(3, 5, 2)).shape == (3, 5, 2)


# --------------------------------------------------------------------- determinism and resume


def _sinusoid_run(logdir: Path, iterations: int, seed: int = 0, resume: bool = False) -> dict:
    settings = fewshot_config("maml", dataset="sinusoid", metatest_tasks=50, eval_every=2, eval_tasks=50, seed=seed,
                              iterations=iterations, checkpoint_every=3)
    return run_meta_training(SinusoidMetaLearning(settings, "maml"), logdir=logdir, resume=resume, progress=False,
                             print_fn=None)


def _curve(logdir: Path, tag: str = "train/query_mse") -> list[tuple[int, float]]:
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def test_same_seed_same_curve_and_resume_continues_it(tmp_path):
    a = _sinusoid_run(tmp_path / "a", 6)
    b = _sinusoid_run(tmp_path / "b", 6)
    assert _curve(tmp_path / "a") == _curve(tmp_path / "b")
    assert a["mse_by_step"] == b["mse_by_step"]
    c = _sinusoid_run(tmp_path / "c", 6, seed=1)
    assert _curve(tmp_path / "c") != _curve(tmp_path / "a")
    _sinusoid_run(tmp_path / "r", 3)
    resumed = _sinusoid_run(tmp_path / "r", 6, resume=True)
    assert _curve(tmp_path / "r") == _curve(tmp_path / "a")
    assert _curve(tmp_path / "r", "eval/mse_step10") == _curve(tmp_path / "a", "eval/mse_step10")
    assert resumed["mse_by_step"] == a["mse_by_step"]
    assert resumed["best"]["iteration"] == a["best"]["iteration"] in (2, 4, 6)


def test_sinusoid_model_selection_goes_through_the_shared_validation(tmp_path):
    """--eval-every keeps the iterate with the lowest mean validation MSE over 1-10 steps in best.pt, and
    metatest_best.json meta-tests it; metatest.json is the last state, as for every learner."""
    settings = fewshot_config("maml", dataset="sinusoid", metatest_tasks=50, eval_every=1, eval_tasks=50, iterations=5)
    result = run_meta_training(SinusoidMetaLearning(settings, "maml"), logdir=tmp_path, progress=False, print_fn=None)
    validation = SinusoidTasks().sample(np.random.default_rng(settings.eval_seed), 50, 5, settings.metatest_queries)
    scores = []
    for iteration in range(1, 6):  # replay the run: the same seed gives the same iterates
        replay = SinusoidMetaLearning(settings, "maml")
        rng = np.random.default_rng(settings.seed)
        for _ in range(iteration):
            replay.meta_train_step(rng)
        scores.append(np.mean([v.mean().item() for v in replay.mse_by_step(replay.module, validation, 10)[1:]]))
    assert result["best"]["iteration"] == int(np.argmin(scores)) + 1
    assert result["best"]["validation_score"] == pytest.approx(-min(scores), rel=1e-5)
    best = json.loads((tmp_path / "metatest_best.json").read_text())
    assert best["iteration"] == result["best"]["iteration"] and "mse_by_step" in best
    assert len(_curve(tmp_path, "eval/mse_step10")) == 5


# ------------------------------------------------------------- the script and load_learner


def write_png_tree(root: Path, alphabets: dict[str, int], drawers: int, seed: int) -> None:
    """Omniglot-like PNGs: each character a few random strokes, each drawer's copy jittered."""
    rng = np.random.default_rng(seed)
    for alphabet, characters in alphabets.items():
        for c in range(characters):
            strokes = [(rng.integers(15, 75, 2), rng.integers(0, 2), rng.integers(20, 30)) for _ in range(3)]
            folder = root / "images_background" / alphabet / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for d in range(drawers):
                paper = np.ones((105, 105), dtype=bool)
                dy, dx = rng.integers(-3, 4, 2)
                for (y, x), vertical, length in strokes:
                    y, x = y + dy, x + dx
                    if vertical:
                        paper[y:y + length, x:x + 6] = False
                    else:
                        paper[y:y + 6, x:x + length] = False
                Image.fromarray(paper).save(folder / f"{c:04d}_{d + 1:02d}.png")


@pytest.fixture(scope="module")
def png_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("omniglot")
    write_png_tree(root, {"Train_A": 8, "Train_B": 8, "Test_C": 10, "Test_D": 10}, drawers=8, seed=0)
    return root


def _script_args(png_tree: Path, logdir: Path, method: str, iterations: int) -> list[str]:
    return ["--algo", method, "--dataset", "omniglot", "--data", str(png_tree), "--seed", "0",
            "--logdir", str(logdir), "--iterations", str(iterations), "--image-size", "14", "--hidden", "16",
            "--meta-batch-size", "2", "--ways", "5", "--queries", "2", "--metatest-queries", "2",
            "--metatest-tasks", "6", "--metatest-chunk", "3", "--downsample", "stride", "--train-alphabets", "Train_A", "Train_B", "--test-alphabets", "Test_C", "Test_D",
            "--no-progress"]


def _support_and_query(png_tree: Path, alphabet: str, characters: int):
    support, labels, query, query_labels = [], [], [], []
    for c in range(characters):
        files = sorted((png_tree / "images_background" / alphabet / f"character{c + 1:02d}").glob("*.png"))
        support.append(np.asarray(Image.open(files[0])))            # bool arrays, as read from the PNGs
        labels.append(f"char{c}")
        query += [np.asarray(Image.open(f)) for f in files[1:3]]
        query_labels += [f"char{c}"] * 2
    return support, labels, query, query_labels


@pytest.mark.parametrize("method", ["maml", "fomaml", "metasgd", "protonet"])
def test_script_writes_metatest_and_load_learner_adapts_to_new_characters(png_tree, tmp_path, method):
    logdir = tmp_path / method
    result = fewshot_main(_script_args(png_tree, logdir, method, iterations=2))
    written = json.loads((logdir / "metatest.json").read_text())
    assert set(written["accuracy"]) == {"5w1s", "5w5s", "20w1s"} == set(written["accuracy_ci95"])
    assert written["accuracy"] == result["accuracy"] and written["algo"] == method
    assert (logdir / "checkpoint.pt").is_file() and list(logdir.glob("events.out.tfevents.*"))

    learner = metarl.fewshot.load_learner(logdir)
    support, labels, query, query_labels = _support_and_query(png_tree, "Test_C", 5)
    adapted = learner.adapt(support, labels)
    predictions = adapted.predict(query)
    assert predictions.shape == (10,) and set(predictions) <= set(labels)
    assert sorted(adapted.classes) == sorted(labels)
    if method == "protonet":  # a support image is at distance zero from its own prototype
        assert list(adapted.predict(support)) == labels


def test_resume_through_the_script_and_errors(png_tree, tmp_path):
    logdir = tmp_path / "proto"
    fewshot_main(_script_args(png_tree, logdir, "protonet", iterations=1))
    with pytest.raises(CheckpointError, match="--resume"):
        fewshot_main(_script_args(png_tree, logdir, "protonet", iterations=1))
    result = fewshot_main(["--resume", str(logdir), "--iterations", "2", "--no-progress"])
    assert result["iterations"] == 2
    # a finished run is meta-tested again with new meta-test settings, without training further
    retested = fewshot_main(["--resume", str(logdir), "--metatest-tasks", "4", "--no-progress"])
    assert retested["iterations"] == 2 and retested["test_episodes"] == 4 and result["test_episodes"] == 6
    # the chunk size trades memory for speed and leaves the episodes and accuracies unchanged
    rechunked = fewshot_main(["--resume", str(logdir), "--metatest-tasks", "4", "--metatest-chunk", "1",
                              "--no-progress"])
    assert rechunked["accuracy"] == pytest.approx(retested["accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match="cannot change metatest_steps"):  # sinusoid validation uses them
        sin = tmp_path / "sin"
        fewshot_main(["--algo", "maml", "--dataset", "sinusoid", "--iterations", "1", "--metatest-tasks", "5",
                      "--eval-tasks", "5", "--logdir", str(sin), "--no-progress"])
        fewshot_main(["--resume", str(sin), "--metatest-steps", "3", "--no-progress"])
    with pytest.raises(ValueError, match="does not apply"):
        fewshot_main(["--algo", "protonet", "--dataset", "sinusoid", "--logdir", str(tmp_path / "x")])
    with pytest.raises(FileNotFoundError, match="--data"):
        fewshot_main(_script_args(tmp_path / "missing", tmp_path / "y", "maml", iterations=1))


def test_load_learner_on_a_sinusoid_run_and_bad_directories(tmp_path):
    _sinusoid_run(tmp_path / "sin", 3)
    regressor = metarl.fewshot.load_learner(tmp_path / "sin")
    batch = SinusoidTasks().sample(np.random.default_rng(0), 1, 5, 20)
    adapted = regressor.adapt(batch.support_inputs[0].numpy(), batch.support_labels[0].numpy())
    assert adapted.predict(batch.query_inputs[0].numpy()).shape == (20, 1)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        metarl.fewshot.load_learner(tmp_path / "nothing")


@pytest.mark.skipif(not SHARED_OMNIGLOT.is_dir(), reason=f"shared Omniglot data not found at {SHARED_OMNIGLOT}")
def test_load_learner_with_pngs_read_from_the_shared_zips(tmp_path):
    logdir = tmp_path / "proto"
    fewshot_main(["--algo", "protonet", "--dataset", "omniglot", "--iterations", "1", "--metatest-tasks", "2",
                  "--metatest-queries", "1", "--logdir", str(logdir), "--no-progress"])
    learner = metarl.fewshot.load_learner(logdir)
    support, labels, query, query_labels = [], [], [], []
    with zipfile.ZipFile(SHARED_OMNIGLOT / "images_background_small2.zip") as archive:
        for c in range(1, 6):
            names = sorted(n for n in archive.namelist()
                           if n.startswith(f"images_background_small2/Tagalog/character{c:02d}/") and n.endswith(".png"))
            images = [np.asarray(Image.open(archive.open(n))) for n in names[:3]]
            assert images[0].shape == (105, 105)
            support.append(images[0])
            labels.append(c)
            query += images[1:]
            query_labels += [c, c]
    predictions = learner.adapt(support, labels).predict(query)
    assert set(predictions) <= set(labels)
    assert list(learner.adapt(support, labels).predict(support)) == labels


def test_images_too_small_for_the_embedding_are_a_clear_error():
    with pytest.raises(ValueError, match="too small.*--image-size"):
        FewShotClassification(classifier_settings("protonet", downsample="maxpool"), "protonet",
                              synthetic_characters(20, 8, 14, seed=0), synthetic_characters(20, 8, 14, seed=1))


def test_multi_step_loss_is_the_mean_of_the_query_losses_after_each_step():
    settings = fewshot_config("maml", dataset="sinusoid")
    learner = SinusoidMetaLearning(settings, "maml").module
    batch = SinusoidTasks().sample(np.random.default_rng(0), 4, 10, 10)
    loss, outputs = learner.query_loss(batch.support_inputs, batch.support_labels, batch.query_inputs,
                                       batch.query_labels, steps=3, multi_step=True)
    per_step = []
    for steps in (1, 2, 3):
        adapted = learner.adapt_tasks(batch.support_inputs, batch.support_labels, steps=steps)
        per_step.append(vmap(learner.loss)(adapted, (batch.query_inputs, batch.query_labels)).mean())
    torch.testing.assert_close(loss, torch.stack(per_step).mean())
    torch.testing.assert_close(outputs, vmap(learner.predict)(adapted, batch.query_inputs))
    last_only, _ = learner.query_loss(batch.support_inputs, batch.support_labels, batch.query_inputs,
                                      batch.query_labels, steps=3, multi_step=False)
    torch.testing.assert_close(last_only, per_step[-1])
    assert settings.inner_steps == 3 and settings.multi_step_loss, "the sinusoid preset trains every step count"
