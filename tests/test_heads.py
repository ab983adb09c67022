"""Custom heads: metrics, training (logreg / MLP), cross-validation, safe files, other forms."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

from emotion2vec_plus.errors import Emotion2VecError
from emotion2vec_plus.heads import (
    HEAD_FORMAT_VERSION,
    EmotionHead,
    HeadFileError,
    HeadMetrics,
    HeadMismatchError,
    TorchHead,
    classification_metrics,
    cross_validate,
    group_folds,
    stratified_folds,
    train_head,
)

LABELS = ["angry", "happy", "neutral", "sad"]


def speaker_data(seed: int = 0, n_speakers: int = 12, per_class: int = 12, dim: int = 32,
                 interaction: float = 1.2) -> tuple[np.ndarray, list[str], list[str]]:
    """Gaussian class clusters with a per-speaker offset and a per-speaker-per-class shift.

    The speaker-specific class shifts are learnable from a speaker's other clips but not from
    other speakers, so grouped (speaker-independent) CV is harder than random CV.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(LABELS), dim)) * 0.6
    xs, ys, groups = [], [], []
    for speaker in range(n_speakers):
        offset = rng.normal(size=dim) * 2.0
        shifts = rng.normal(size=(len(LABELS), dim)) * interaction / np.sqrt(dim) * 4
        for c, label in enumerate(LABELS):
            xs.append(centres[c] + offset + shifts[c] + rng.normal(size=(per_class, dim)))
            ys += [label] * per_class
            groups += [f"spk{speaker:02d}"] * per_class
    return np.concatenate(xs).astype(np.float32), ys, groups


def accuracy(predicted: list[str], truth: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth)]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list[str], list[str]]:
    return speaker_data()


@pytest.fixture(scope="module")
def logreg_head(data) -> EmotionHead:
    x, y, _ = data
    return train_head(x, y, embedding_model="large")


@pytest.fixture(scope="module")
def mlp_head(data) -> EmotionHead:
    x, y, _ = data
    return train_head(x, y, kind="mlp", embedding_model="large", hidden=32, epochs=20)


# --------------------------------------------------------------------------- metrics
def test_metrics_on_a_hand_made_example():
    truth = ["a"] * 6 + ["b"] * 2 + ["c"] * 2
    guess = ["a"] * 6 + ["a", "b"] + ["a", "a"]
    metrics = classification_metrics(truth, guess, ["a", "b", "c", "d"])
    assert metrics.confusion == [[6, 0, 0, 0], [1, 1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]]
    assert metrics.weighted_accuracy == pytest.approx(0.7)
    # Recalls 1, 0.5, 0 over the classes present in the truth; "d" (absent) does not count.
    assert metrics.unweighted_accuracy == pytest.approx(0.5)
    assert metrics.n_samples == 10 and metrics.n_folds == 1
    assert metrics.fold_unweighted_accuracy == [pytest.approx(0.5)]
    as_dict = metrics.to_dict()
    assert as_dict["labels"] == ["a", "b", "c", "d"] and json.loads(json.dumps(as_dict)) == as_dict
    assert isinstance(metrics, HeadMetrics)


@pytest.mark.parametrize(("truth", "guess", "labels", "match"), [
    (["a", "x"], ["a", "a"], ["a", "b"], "y_true holds labels not in"),
    (["a", "b"], ["a", "z"], ["a", "b"], "y_pred holds labels not in"),
    (["a"], ["a", "b"], ["a", "b"], "entries"),
    ([], [], ["a", "b"], "zero samples"),
    (["a"], ["a"], ["a", "a"], "distinct"),
])
def test_metrics_reject_bad_arguments(truth, guess, labels, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(truth, guess, labels)


# --------------------------------------------------------------------------- training
def test_logreg_matches_sklearn_on_held_out_speakers(data):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, y, groups = data
    train = np.array([g < "spk08" for g in groups])
    y_arr = np.array(y)
    head = train_head(x[train], y_arr[train].tolist(), embedding_model="large")
    ours = accuracy(head.predict(x[~train]), y_arr[~train].tolist())
    with threadpool_limits(1):
        reference = LogisticRegression(class_weight="balanced", max_iter=2000).fit(x[train], y_arr[train])
        theirs = accuracy(reference.predict(x[~train]).tolist(), y_arr[~train].tolist())
        # The same objective (sklearn's C = 1 / (l2 * n) on standardised features) gives the same model.
        z = (x - head.params["mean"]) / head.params["scale"]
        same = LogisticRegression(class_weight="balanced", C=1 / (1e-3 * train.sum()), max_iter=5000, tol=1e-10)
        same.fit(z[train], y_arr[train])
    assert 0.5 < theirs < 0.98, "the toy problem should be neither trivial nor hopeless"
    assert abs(ours - theirs) <= 0.025
    assert list(same.classes_) == head.labels
    np.testing.assert_allclose(head.predict_proba(x[~train]), same.predict_proba(z[~train]), atol=5e-3)
    assert head.training["converged"] and head.training["n_per_class"] == {label: 96 for label in LABELS}


def test_balanced_class_weights_raise_minority_recall():
    rng = np.random.default_rng(1)
    dim = 8

    def sample(n_major: int, n_minor: int) -> tuple[np.ndarray, list[str]]:
        major = rng.normal(size=(n_major, dim))
        minor = rng.normal(size=(n_minor, dim)) + 1.0 / np.sqrt(dim) * 1.8
        return np.concatenate([major, minor]), ["common"] * n_major + ["rare"] * n_minor

    x, y = sample(500, 25)
    x_test, y_test = sample(400, 400)
    recalls = {}
    for weighting in (None, "balanced"):
        head = train_head(x, y, embedding_model="base", class_weight=weighting)
        metrics = classification_metrics(y_test, head.predict(x_test), ["common", "rare"])
        recalls[weighting] = metrics.confusion[1][1] / 400
    assert recalls[None] < 0.3
    assert recalls["balanced"] > recalls[None] + 0.3


def test_mlp_learns_xor_where_logreg_cannot():
    rng = np.random.default_rng(2)

    def xor(n: int) -> tuple[np.ndarray, list[str]]:
        signs = rng.choice([-1.0, 1.0], size=(n, 2))
        x = np.concatenate([signs * 2 + rng.normal(scale=0.5, size=(n, 2)), rng.normal(size=(n, 6))], axis=1)
        return x.astype(np.float32), ["same" if a == b else "different" for a, b in signs]

    x, y = xor(400)
    x_test, y_test = xor(400)
    logreg = train_head(x, y, embedding_model="compact")
    mlp = train_head(x, y, kind="mlp", embedding_model="compact", hidden=32, epochs=60, lr=1e-2)
    assert accuracy(logreg.predict(x_test), y_test) < 0.65
    assert accuracy(mlp.predict(x_test), y_test) > 0.95
    assert mlp.training["hidden"] == 32 and mlp.as_linear() is None


def test_training_is_deterministic_and_leaves_the_global_rng_alone(data):
    x, y, _ = data
    for kind in ("logreg", "mlp"):
        state = torch.get_rng_state()
        first = train_head(x, y, kind=kind, embedding_model="large", hidden=16, epochs=5, seed=7)
        assert torch.equal(torch.get_rng_state(), state)
        torch.manual_seed(123)  # a different global state must not matter
        second = train_head(x, y, kind=kind, embedding_model="large", hidden=16, epochs=5, seed=7)
        for name, value in first.params.items():
            np.testing.assert_array_equal(value, second.params[name])
    other = train_head(x, y, kind="mlp", embedding_model="large", hidden=16, epochs=5, seed=8)
    assert not np.array_equal(other.params["hidden.weight"], first.params["hidden.weight"])


def test_concurrent_trainings_match_sequential_ones_and_restore_torch_threads(data):
    from concurrent.futures import ThreadPoolExecutor

    x, y, _ = data
    threads = torch.get_num_threads()
    kwargs = [{"kind": "logreg", "l2": 1e-2}, {"kind": "mlp", "hidden": 16, "epochs": 10, "seed": 1},
              {"kind": "mlp", "hidden": 16, "epochs": 10, "seed": 2}]
    with ThreadPoolExecutor(3) as pool:
        parallel = list(pool.map(lambda kw: train_head(x, y, embedding_model="large", **kw), kwargs))
    assert torch.get_num_threads() == threads
    for head, kw in zip(parallel, kwargs):
        alone = train_head(x, y, embedding_model="large", **kw)
        for name, value in alone.params.items():
            np.testing.assert_array_equal(head.params[name], value)
    assert torch.get_num_threads() == threads


def test_label_order_and_unseen_labels(data):
    x, y, _ = data
    order = ["sad", "neutral", "happy", "angry", "bored"]
    head = train_head(x, y, embedding_model="large", label_order=order)
    assert head.labels == order
    probs = head.predict_proba(x)
    assert probs.shape == (len(y), 5) and probs[:, 4].max() < 1e-3
    assert head.training["n_per_class"]["bored"] == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "svm"}, "kind"),
    ({"class_weight": "auto"}, "class_weight"),
    ({"l2": -1.0}, "l2"),
    ({"label_order": ["angry", "happy"]}, "not in label_order"),
    ({"kind": "mlp", "dropout": 1.0}, "dropout"),
])
def test_train_head_rejects_bad_arguments(data, kwargs, match):
    x, y, _ = data
    with pytest.raises(ValueError, match=match):
        train_head(x, y, embedding_model="large", **kwargs)


def test_train_head_rejects_bad_data(data):
    x, y, _ = data
    with pytest.raises(ValueError, match="labels"):
        train_head(x, y[:-1], embedding_model="large")
    with pytest.raises(ValueError, match="at least 2 classes"):
        train_head(x[:5], ["angry"] * 5, embedding_model="large")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        train_head(bad, y, embedding_model="large")


# --------------------------------------------------------------------------- inference
def test_inference_shapes_and_input_checks(logreg_head, data):
    x, _, _ = data
    logits = logreg_head.logits(x[:5])
    assert logits.shape == (5, 4) and logits.dtype == np.float32
    np.testing.assert_allclose(logreg_head.logits(x[0]), logits[0], rtol=1e-6)
    probs = logreg_head.predict_proba(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert logreg_head.predict(x[0]) == logreg_head.predict(x[:1])
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        logreg_head.logits(np.zeros((3, 31), dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        logreg_head.logits(np.full(32, np.inf))


def test_as_linear_reproduces_logits(logreg_head, data):
    x, _, _ = data
    weight, bias = logreg_head.as_linear()
    assert weight.shape == (4, 32) and bias.shape == (4,)
    np.testing.assert_allclose(x @ weight.T + bias, logreg_head.logits(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_to_torch_reproduces_logits(kind, logreg_head, mlp_head, data):
    x, _, _ = data
    head = logreg_head if kind == "logreg" else mlp_head
    module = head.to_torch()
    assert isinstance(module, TorchHead) and not module.training and module.labels == head.labels
    with torch.no_grad():
        out = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, head.logits(x), rtol=1e-4, atol=1e-4)


def test_check_embedding_model(logreg_head):
    logreg_head.check_embedding_model("large")
    logreg_head.check_embedding_model(" Large ", embed_dim=32)
    with pytest.raises(HeadMismatchError, match=r"trained on 'large' embeddings \(32-d\), this model gives 'compact' \(512-d\)"):
        logreg_head.check_embedding_model("compact", embed_dim=512)
    with pytest.raises(HeadMismatchError, match="'base'"):
        logreg_head.check_embedding_model("base")
    with pytest.raises(HeadFileError, match=r"\(1024-d\)"):
        logreg_head.check_embedding_model("large", embed_dim=1024)
    assert issubclass(HeadMismatchError, Emotion2VecError)


# --------------------------------------------------------------------------- cross-validation
def test_group_folds_never_split_a_group():
    groups = [f"g{i}" for i in range(7) for _ in range(3 + 2 * i)] + [42] * 4
    for n_folds in (2, 3, 5, 8, 20):
        folds = group_folds(groups, n_folds)
        assert len(folds) == min(n_folds, 8)
        tested = np.concatenate([test for _, test in folds])
        assert sorted(tested.tolist()) == list(range(len(groups)))  # every sample tested exactly once
        for train, test in folds:
            assert len(test) and not set(train) & set(test) and len(train) + len(test) == len(groups)
            assert not {groups[i] for i in train} & {groups[i] for i in test}
    sizes = [len(test) for _, test in group_folds(groups, 3)]
    assert max(sizes) - min(sizes) <= 13  # greedy balancing: within one (largest) group
    assert [t.tolist() for _, t in group_folds(groups, 3)] == [t.tolist() for _, t in group_folds(groups, 3)]
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_folds(["only"] * 5, 5)


def test_stratified_folds_partition_and_stratify(data):
    _, y, _ = data
    folds = stratified_folds(y, 5, seed=3)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(y)))
    for _, test in folds:
        counts = {label: sum(y[i] == label for i in test) for label in LABELS}
        assert max(counts.values()) - min(counts.values()) <= 1
    assert [t.tolist() for _, t in folds] == [t.tolist() for _, t in stratified_folds(y, 5, seed=3)]
    assert [t.tolist() for _, t in folds] != [t.tolist() for _, t in stratified_folds(y, 5, seed=4)]


def test_grouped_cv_is_harder_than_random_cv(data):
    x, y, groups = data
    grouped = cross_validate(x, y, groups, n_folds=4)
    random = cross_validate(x, y, n_folds=4)
    assert grouped.n_folds == random.n_folds == 4 and len(grouped.fold_unweighted_accuracy) == 4
    assert grouped.n_samples == len(y) and sum(map(sum, grouped.confusion)) == len(y)
    assert grouped.labels == sorted(LABELS)
    assert random.unweighted_accuracy > grouped.unweighted_accuracy + 0.1
    assert min(grouped.fold_unweighted_accuracy) <= grouped.unweighted_accuracy <= max(grouped.fold_unweighted_accuracy)
    # Few groups: leave-one-group-out.
    logo = cross_validate(x, y, [g if g < "spk03" else "rest" for g in groups], n_folds=5)
    assert logo.n_folds == 4


def test_cross_validate_with_a_class_missing_from_a_training_fold(data):
    x, y, groups = data
    keep = [i for i, (label, group) in enumerate(zip(y, groups)) if label != "sad" or group == "spk00"]
    metrics = cross_validate(x[keep], [y[i] for i in keep], [groups[i] for i in keep], n_folds=3,
                             kind="mlp", hidden=16, epochs=5)
    sad = metrics.labels.index("sad")
    assert metrics.confusion[sad][sad] == 0  # the fold testing spk00 never saw "sad"
    assert sum(metrics.confusion[sad]) == 12


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_save_load_round_trip(kind, logreg_head, mlp_head, data, tmp_path):
    x, y, groups = data
    head = logreg_head if kind == "logreg" else mlp_head
    head.metrics = cross_validate(x, y, groups, n_folds=2, epochs=2, hidden=8, kind=kind).to_dict()
    path = head.save(tmp_path / "sub" / "head.safetensors")
    assert path == tmp_path / "sub" / "head.safetensors"
    assert [p.name for p in path.parent.iterdir()] == ["head.safetensors"]  # no temporary file left
    loaded = EmotionHead.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(x), head.predict_proba(x))
    for name in ("labels", "kind", "embed_dim", "embedding_model", "metrics", "training"):
        assert getattr(loaded, name) == getattr(head, name)
    assert loaded.source == str(path)
    head.save(path)  # overwriting an existing head is fine
    with pytest.raises(HeadMismatchError, match=str(path)):
        loaded.check_embedding_model("compact", embed_dim=512)


def _bad_files(head: EmotionHead, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a damaged or foreign head file, a fragment the error must contain)."""
    good = head.save(tmp_path / "good.safetensors")
    raw = good.read_bytes()
    with safetensors.safe_open(good, framework="numpy") as handle:
        metadata = dict(handle.metadata())
    tensors = {name: value.copy() for name, value in head.params.items()}
    cases: dict[str, tuple[bytes, str]] = {
        "pickle": (pickle.dumps({"weight": np.zeros((4, 32))}), "pickle"),
        "truncated": (raw[: len(raw) - 17], "safetensors"),
        "header only": (raw[:40], "safetensors"),
        "empty": (b"", "safetensors"),
        "no metadata": (safetensors.numpy.save(tensors), "metadata lacks"),
        "some metadata": (safetensors.numpy.save(tensors, metadata={"kind": '"logreg"'}), "labels"),
        "bad json": (safetensors.numpy.save(tensors, metadata={**metadata, "labels": "[oops"}), "not valid JSON"),
        "foreign format": (safetensors.numpy.save(tensors, metadata={**metadata, "format": '"other"'}), "format"),
        "newer version": (safetensors.numpy.save(
            tensors, metadata={**metadata, "format_version": str(HEAD_FORMAT_VERSION + 1)}), "newer"),
        "dim mismatch": (safetensors.numpy.save(
            tensors, metadata={**metadata, "embed_dim": "64"}), "tensor 'mean' has shape (32,), expected (64,)"),
        "label count mismatch": (safetensors.numpy.save(
            tensors, metadata={**metadata, "labels": '["a", "b", "c"]'}), "'weight' has shape (4, 32), expected (3, 32)"),
        "wrong weight shape": (safetensors.numpy.save(
            {**tensors, "weight": np.zeros((4, 31), np.float32)}, metadata=metadata), "'weight' has shape"),
        "missing tensor": (safetensors.numpy.save(
            {k: v for k, v in tensors.items() if k != "bias"}, metadata=metadata), "missing tensor(s) bias"),
        "extra tensor": (safetensors.numpy.save(
            {**tensors, "evil": np.zeros(1, np.float32)}, metadata=metadata), "unexpected tensor(s) evil"),
        "unknown kind": (safetensors.numpy.save(tensors, metadata={**metadata, "kind": '"svm"'}), "kind"),
        "duplicate labels": (safetensors.numpy.save(
            tensors, metadata={**metadata, "labels": '["a", "a", "b", "c"]'}), "distinct"),
        "zero scale": (safetensors.numpy.save(
            {**tensors, "scale": np.zeros(32, np.float32)}, metadata=metadata), "positive"),
        "nan weights": (safetensors.numpy.save(
            {**tensors, "weight": np.full((4, 32), np.nan, np.float32)}, metadata=metadata), "NaN"),
        "bad metrics": (safetensors.numpy.save(tensors, metadata={**metadata, "metrics": "[1, 2]"}), "metrics"),
        "metrics nested 100,000 deep": (safetensors.numpy.save(  # was a RecursionError traceback
            tensors, metadata={**metadata, "metrics": "[" * 100_000 + "]" * 100_000}), "nested more than 32 levels"),
        "training nested 500 deep": (safetensors.numpy.save(
            tensors, metadata={**metadata, "training": '{"a": ' * 500 + "1" + "}" * 500}), "nested more than 32"),
    }
    files = {}
    for i, (name, (content, fragment)) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.safetensors"
        path.write_bytes(content)
        files[name] = (path, fragment)
    torch_file = tmp_path / "torch.safetensors"
    torch.save({"weight": torch.zeros(4, 32)}, torch_file)
    files["torch.save"] = (torch_file, "torch.save")
    files["not found"] = (tmp_path / "missing.safetensors", "not found")
    return files


def test_every_bad_file_is_a_head_file_error_naming_the_file(logreg_head, tmp_path):
    files = _bad_files(logreg_head, tmp_path)
    assert len(files) == 23
    for name, (path, fragment) in files.items():
        with pytest.raises(HeadFileError) as caught:
            EmotionHead.load(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: "), (name, message)
        assert fragment in message, (name, message)


def test_loading_a_pickle_runs_no_code(tmp_path, monkeypatch):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("the pickle was executed",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
    with pytest.raises(HeadFileError, match="pickle"):
        EmotionHead.load(path)


def test_constructor_validates_and_save_needs_json_metadata(logreg_head, tmp_path):
    params = dict(logreg_head.params)
    with pytest.raises(ValueError, match="at least 2 labels"):
        EmotionHead(["only"], "logreg", 32, "large", params)
    with pytest.raises(ValueError, match="embedding_model"):
        EmotionHead(LABELS, "logreg", 32, "", params)
    head = EmotionHead(LABELS, "logreg", 32, "large", params, metrics={"when": object()})
    with pytest.raises(ValueError, match="JSON"):
        head.save(tmp_path / "h.safetensors")
    assert not list(tmp_path.iterdir())
