"""Embedding analytics: cosine similarity, Parquet index, search, UMAP + HDBSCAN clustering, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BUNDLED_DIM, speech_clips
from emotion2vec_plus import analytics, cli
from emotion2vec_plus.analytics import (
    ClusterReport,
    EmbeddingIndex,
    IndexFileError,
    cluster_embeddings,
    cosine_similarity,
    describe_similarity,
    load_index,
    search,
    write_cluster_report,
)
from emotion2vec_plus.embeddings import save_embedding
from emotion2vec_plus.errors import EmbeddingFileError

BLOB_EMOTIONS = ("happy", "sad", "angry")
SCORE_NAMES = ("angry", "happy", "neutral", "sad")


def write_index(path, paths, embeddings, emotions=None, confidences=None, *, kind="fixed",
                value_type=pa.float32(), row_group_size=None):
    """A Parquet file in the batch job's schema: path, emotion, confidence, scores (struct), embedding."""
    embeddings = np.asarray(embeddings)
    n = len(paths)
    emotions = list(emotions) if emotions is not None else [None] * n
    confidences = list(confidences) if confidences is not None else [None] * n
    if kind == "fixed":
        values = pa.array(embeddings.reshape(-1), type=value_type)
        embedding = pa.FixedSizeListArray.from_arrays(values, embeddings.shape[1])
    elif kind == "list":
        embedding = pa.array([list(map(float, row)) for row in embeddings], type=pa.list_(value_type))
    else:  # a ready-made pyarrow array (ragged lists, nulls ...)
        embedding = kind
    scores = pa.array([{name: (None if c is None else float(c) / len(SCORE_NAMES)) for name in SCORE_NAMES}
                       for c in confidences])
    table = pa.table({"path": pa.array(list(map(str, paths)), pa.string()), "emotion": pa.array(emotions, pa.string()),
                      "confidence": pa.array(confidences, pa.float64()), "scores": scores, "embedding": embedding})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *names):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if not line.startswith("cluster: ")]  # progress lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], (name, err)


# --------------------------------------------------------------------------- synthetic data
@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """3 well-separated Gaussian blobs in 64-d, 60 points each, as an index file."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((3, 64)) * 3.0
    truth = np.repeat(np.arange(3), 60)
    embeddings = (centres[truth] + rng.standard_normal((180, 64))).astype(np.float32)
    paths = [f"clips/blob{b}/utt_{i:03d}.wav" for i, b in enumerate(truth)]
    emotions = [BLOB_EMOTIONS[b] if i % 10 else None for i, b in enumerate(truth)]  # some rows without emotion
    confidences = [None if i % 10 == 0 else 0.5 + 0.1 * b for i, b in enumerate(truth)]
    # Noise in the labels: a few rows of each blob carry another emotion.
    for i in range(3, 180, 20):
        emotions[i] = "neutral"
    path = write_index(tmp_path_factory.mktemp("blobs") / "embeddings.parquet", paths, embeddings, emotions,
                       confidences, row_group_size=50)
    return {"path": path, "truth": truth, "embeddings": embeddings, "paths": paths, "emotions": emotions,
            "confidences": confidences}


@pytest.fixture(scope="module")
def blob_index(blobs):
    return load_index(blobs["path"])


@pytest.fixture(scope="module")
def blob_report(blob_index):
    return cluster_embeddings(blob_index, min_cluster_size=15, seed=0)


def test_cosine_similarity_basics():
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    assert cosine_similarity(a, a * 5) == pytest.approx(1.0)
    assert cosine_similarity(a, np.array([0.0, 2.0, 0.0])) == pytest.approx(0.0)
    assert cosine_similarity(a, -a) == pytest.approx(-1.0)
    frames = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]])  # mean (1, 0, 0)
    assert cosine_similarity(frames, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="dimensions differ: 3 vs 4"):
        cosine_similarity(a, np.ones(4))
    with pytest.raises(ValueError, match="all zeros"):
        cosine_similarity(a, np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        cosine_similarity(a, np.array([1.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        cosine_similarity(np.ones((2, 2, 2)), a)


def test_describe_similarity_bands():
    assert "identical" in describe_similarity(1.0)
    readings = [describe_similarity(v) for v in np.linspace(1, -1, 41)]
    assert len(set(readings)) == len(analytics.SIMILARITY_BANDS)  # every band is reachable, in order
    with pytest.raises(ValueError):
        describe_similarity(float("nan"))


def test_the_reading_says_what_a_value_means_and_no_more():
    """Issue 20: -0.31 was "opposite emotional profile" and 0.41 (two clips 96 % angry) "similar". Each
    reading now says how often pairs with the same and with different emotions reach the value,
    and claims only as much as that supports."""
    for value in (0.9, 0.6, 0.41, 0.3, 0.1, -0.1, -0.31, -0.9):
        reading = describe_similarity(value)
        assert "pairs of clips with" in reading and "same emotion" in reading, (value, reading)
        assert not any(word in reading for word in ("opposite", "similar emotional profile", "profile")), reading
    assert describe_similarity(-0.31).endswith("a sign of different emotions")
    assert describe_similarity(0.41).endswith("a hint of the same emotion")
    assert describe_similarity(0.3).endswith("says little") and describe_similarity(0.1).endswith("says little, leaning to different emotions")


@pytest.mark.slow
def test_the_readings_hold_on_real_speech_by_different_speakers(model):
    """What the readings claim about pairs of two speakers, checked on 240 RAVDESS clips (4 actors).
    The bundled model has heard these actors, so the claims must hold here with room to spare
    (they were measured on speakers it never heard)."""
    clips = speech_clips(240)
    results = model.predict_batch(clips, extract_embedding=True, errors="raise")
    z = np.stack([r.embedding for r in results]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    import csv

    from conftest import DATASETS

    with (DATASETS / "RAVDESS" / "manifest.csv").open(encoding="utf-8") as handle:
        rows = {DATASETS / "RAVDESS" / row["path"]: row for row in csv.DictReader(handle)}
    actors = np.array([rows[c]["speaker"] for c in clips])
    emotions = np.array([rows[c]["label"] for c in clips])  # calm is neutral, as the model was taught
    cos = z @ z.T
    pairs = np.triu(np.ones_like(cos, dtype=bool), 1) & (actors[:, None] != actors[None, :])
    same, different = cos[pairs & (emotions[:, None] == emotions[None, :])], cos[pairs & (emotions[:, None] != emotions[None, :])]
    assert len(set(actors)) == 4 and len(same) > 1000 and len(different) > 10_000
    sign_same = next(b for b, r in analytics.SIMILARITY_BANDS if r.endswith("a sign of the same emotion"))
    sign_different = next(b for b, r in analytics.SIMILARITY_BANDS[:-1] if r.endswith("a hint of different emotions"))
    assert np.mean(different >= sign_same) <= 0.03  # "higher than 97% of pairs with different emotions"
    assert np.mean(same < sign_different) <= 0.02  # "lower than 99% of pairs with the same emotion"
    assert np.mean(same >= sign_same) > 3 * np.mean(different >= sign_same)


def test_load_index_reads_the_batch_schema(blobs, blob_index):
    assert len(blob_index) == 180 and blob_index.dim == 64 and blob_index.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(blob_index.embeddings, axis=1), 1.0, atol=1e-5)
    expected = blobs["embeddings"] / np.linalg.norm(blobs["embeddings"], axis=1, keepdims=True)
    assert np.allclose(blob_index.embeddings, expected, atol=1e-6)  # row order kept across row groups
    assert blob_index.paths == blobs["paths"]
    assert blob_index.emotions == blobs["emotions"] and blob_index.emotions[0] is None
    assert blob_index.confidences[0] is None and blob_index.confidences[1] == pytest.approx(0.5)


@pytest.mark.parametrize("kind, value_type", [("list", pa.float32()), ("fixed", pa.float64()),
                                              ("list", pa.float16())])
def test_load_index_accepts_variable_lists_and_other_float_widths(tmp_path, kind, value_type):
    emb = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    path = write_index(tmp_path / "e.parquet", [f"f{i}.wav" for i in range(5)], emb, kind=kind, value_type=value_type)
    index = load_index(path)
    assert index.embeddings.shape == (5, 8)
    assert np.allclose(index.embeddings, emb / np.linalg.norm(emb, axis=1, keepdims=True), atol=2e-3)


def test_load_index_without_optional_columns(tmp_path):
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(8, dtype=np.float32)), 4)
    pq.write_table(pa.table({"path": ["a.wav", "b.wav"], "embedding": emb}), tmp_path / "min.parquet")
    index = load_index(tmp_path / "min.parquet")
    assert index.emotions == [None, None] and index.confidences == [None, None]


def _bad_index(tmp_path, case):
    """(file, message fragment) for each malformed index."""
    ok = np.ones((3, 4), dtype=np.float32)
    names = ["a.wav", "b.wav", "c.wav"]
    target = tmp_path / f"{case}.parquet"
    if case == "missing":
        return tmp_path / "nowhere.parquet", "not found"
    if case == "not_parquet":
        target.write_text("path,embedding\na.wav,1 2 3\n")
        return target, "not a Parquet file"
    if case == "truncated":
        write_index(target, names, ok)
        data = target.read_bytes()
        target.write_bytes(data[:4] + data[len(data) // 2:])  # PAR1 at both ends, garbage inside
        return target, "Parquet"
    if case == "no_embedding_column":
        pq.write_table(pa.table({"path": names, "emotion": ["happy"] * 3}), target)
        return target, "missing column(s) embedding"
    if case == "ragged":
        write_index(target, names, None, kind=pa.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0, 3.0]], pa.list_(pa.float32())))
        return target, "ragged"
    if case == "nan":
        bad = ok.copy()
        bad[1, 2] = np.nan
        write_index(target, names, bad)
        return target, "row 1 (b.wav) contains NaN"
    if case == "zero_vector":
        bad = ok.copy()
        bad[2] = 0
        write_index(target, names, bad)
        return target, "row 2 (c.wav) is all zeros"
    if case == "null_embedding":
        write_index(target, names, None, kind=pa.array([[1.0, 2.0], None, [1.0, 2.0]], pa.list_(pa.float32())))
        return target, "row 1 (b.wav) has no embedding"
    if case == "strings":
        write_index(target, names, None, kind=pa.array([["x"], ["y"], ["z"]], pa.list_(pa.string())))
        return target, "expected floats"
    if case == "empty":
        write_index(target, [], np.zeros((0, 4), dtype=np.float32))
        return target, "no rows"
    raise AssertionError(case)


BAD_CASES = ["missing", "not_parquet", "truncated", "no_embedding_column", "ragged", "nan", "zero_vector",
             "null_embedding", "strings", "empty"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_malformed_index_is_a_clear_error(tmp_path, case):
    path, fragment = _bad_index(tmp_path, case)
    with pytest.raises(IndexFileError) as info:
        load_index(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_search_exact_cosine(blob_index, monkeypatch):
    query = blob_index.embeddings[42] * 3.0
    hits = search(blob_index, query, top=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0].row == 42 and hits[0].path == blob_index.paths[42] and hits[0].similarity == pytest.approx(1.0)
    brute = blob_index.embeddings @ blob_index.embeddings[42]
    assert [h.row for h in hits] == list(np.argsort(-brute, kind="stable")[:5])
    assert all(a.similarity >= b.similarity for a, b in zip(hits, hits[1:]))
    assert all(blob_index.paths[h.row].startswith("clips/blob0/") for h in hits)  # row 42 is in blob 0
    assert len(search(blob_index, query, top=1000)) == 180
    frames = np.stack([query, query])
    assert search(blob_index, frames, top=1)[0].row == 42
    with pytest.raises(ValueError, match="query embedding is 32-d but the embeddings in .* are 64-d"):
        search(blob_index, np.ones(32), top=3)
    with pytest.raises(ValueError, match="top"):
        search(blob_index, query, top=0)
    # The large-index path: FAISS when importable, otherwise the same NumPy search.
    monkeypatch.setattr(analytics.index, "FAISS_THRESHOLD", 10)
    assert [h.row for h in search(blob_index, query, top=5)] == [h.row for h in hits]


def test_clustering_finds_the_three_blobs(blobs, blob_index, blob_report):
    report = blob_report
    assert isinstance(report, ClusterReport)
    assert report.labels.shape == (180,) and report.coords.shape == (180, 2)
    assert report.n_clusters == 3 and report.n_noise == 0
    for blob in range(3):  # each blob is exactly one cluster
        assert len(set(report.labels[blobs["truth"] == blob].tolist())) == 1
    assert len(set(report.labels.tolist())) == 3
    summary = {entry["cluster"]: entry for entry in report.summary}
    assert sorted(summary) == [0, 1, 2]
    for blob, emotion in enumerate(BLOB_EMOTIONS):
        entry = summary[int(report.labels[blobs["truth"] == blob][0])]
        assert entry["size"] == 60 and entry["dominant_emotion"] == emotion
        assert entry["mean_confidence"] == pytest.approx(0.5 + 0.1 * blob)
        assert 1 <= len(entry["examples"]) <= 5
        assert all(p.startswith(f"clips/blob{blob}/") for p in entry["examples"])
        assert entry["emotions"]["neutral"] == 3
    assert report.params["cluster_space"] == f"umap-{analytics.CLUSTER_DIMS}d" and report.params["seed"] == 0


def test_clustering_is_deterministic_for_a_seed(blob_index, blob_report):
    again = cluster_embeddings(blob_index, min_cluster_size=15, seed=0)
    assert np.array_equal(again.labels, blob_report.labels)
    assert np.array_equal(again.coords, blob_report.coords)
    assert again.summary == blob_report.summary


def test_cluster_arguments_are_checked(blob_index):
    one = EmbeddingIndex.from_arrays(blob_index.paths[:1], blob_index.embeddings[:1], source="one.parquet")
    with pytest.raises(ValueError, match="only 1 embedding in one.parquet: a map needs at least 2"):
        cluster_embeddings(one)
    with pytest.raises(ValueError, match="min_cluster_size"):
        cluster_embeddings(blob_index, min_cluster_size=1)
    small = EmbeddingIndex.from_arrays(blob_index.paths[:10], blob_index.embeddings[:10])
    report = cluster_embeddings(small, min_cluster_size=15)  # larger than the set: lowered to it
    assert report.params["min_cluster_size"] == 10 and report.coords.shape == (10, 2)


def test_the_suggested_cluster_size_follows_the_set_size():
    from emotion2vec_plus.analytics import suggested_min_cluster_size

    assert [suggested_min_cluster_size(n) for n in (2, 5, 8, 12, 19, 40, 100, 400, 100_000)] == [
        2, 2, 2, 3, 3, 5, 8, 15, 15]


def test_cluster_report_files(blob_index, blob_report, tmp_path):
    written = write_cluster_report(blob_report, blob_index, tmp_path / "report")
    assert {p.name for p in written.values()} == {"clusters.csv", "map.png", "map.html", "summary.json"}
    assert written["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written["png"].stat().st_size > 10_000
    page = written["html"].read_text(encoding="utf-8")
    assert 'id="emotion-map"' in page and "Plotly.newPlot" in page
    assert "utt_042.wav" in page  # hover text: file name
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js is embedded: works offline
    lines = written["csv"].read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,cluster,emotion,confidence,x,y" and len(lines) == 181
    row = lines[2].split(",")
    assert row[0] == blob_index.paths[1] and int(row[1]) == blob_report.labels[1] and row[2] == "happy"
    assert lines[1].split(",")[2:4] == ["", ""]  # row 0 has no emotion / confidence
    summary = json.loads(written["json"].read_text(encoding="utf-8"))
    assert summary["n_embeddings"] == 180 and summary["n_clusters"] == 3 and summary["n_noise"] == 0
    assert {c["dominant_emotion"] for c in summary["clusters"]} == set(BLOB_EMOTIONS)


def test_report_with_noise_and_awkward_names(tmp_path):
    rng = np.random.default_rng(1)
    emb = np.concatenate([rng.standard_normal((40, 16)) * 0.1 + 4, rng.standard_normal((40, 16)) * 0.1 - 4,
                          rng.standard_normal((6, 16)) * 6])
    names = [f"dir/<b>clip {i}</script>.wav" for i in range(len(emb))]
    index = EmbeddingIndex.from_arrays(names, emb, ["happy"] * len(emb), [0.9] * len(emb))
    report = ClusterReport(labels=np.array([0] * 40 + [1] * 40 + [-1] * 6), coords=rng.standard_normal((86, 2)),
                           summary=analytics.cluster._summarise(index, np.array([0] * 40 + [1] * 40 + [-1] * 6)))
    assert report.summary[-1]["cluster"] == -1 and report.summary[-1]["size"] == 6
    written = write_cluster_report(report, index, tmp_path)
    page = written["html"].read_text(encoding="utf-8")
    assert "</script>.wav" not in page  # file names cannot break out of the page's script
    assert written["png"].read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- command line (synthetic)
def test_cli_cluster_writes_the_report(blobs, tmp_path, capsys):
    code, out, err = run_cli(["cluster", blobs["path"], "--out", tmp_path / "rep", "--seed", "0"], capsys)
    assert code == 0, err
    assert "180 embeddings (64-d): 3 clusters, 0 noise" in out
    assert sum(1 for line in out.splitlines() if "(" in line and "%" in line and "clips/blob" in line) == 3
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {"clusters.csv", "map.png", "map.html", "summary.json"}


@pytest.fixture(scope="module")
def big_blobs(tmp_path_factory):
    """4 separated Gaussian blobs in 64-d, 400 points each (1600 rows), as an index file."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((4, 64)) * 3.0
    truth = np.repeat(np.arange(4), 400)
    embeddings = (centres[truth] + rng.standard_normal((1600, 64))).astype(np.float32)
    path = write_index(tmp_path_factory.mktemp("big") / "embeddings.parquet", [f"c/{i}.wav" for i in range(1600)],
                       embeddings, ["happy"] * 1600, [0.8] * 1600)
    return {"path": path, "truth": truth}


def test_an_index_larger_than_max_clustered_is_clustered_on_a_sample_and_assigned(big_blobs):
    """UMAP + HDBSCAN run on ``max_clustered`` rows only; every other row joins its nearest sampled
    neighbours' cluster (200,000 rows clustered directly ran over 600 s and reached 2.9 GB)."""
    from sklearn.metrics import adjusted_rand_score

    index = load_index(big_blobs["path"])
    lines: list[str] = []
    report = cluster_embeddings(index, min_cluster_size=15, seed=0, max_clustered=300, progress=lines.append)
    assert len(report.labels) == len(report.coords) == 1600 and len(report.clustered_rows) == 300
    assert report.params["clustered"] == 300 and report.params["assigned_by_nearest_sampled"] == 1300
    assert any("neighbour graph of 300 embeddings" in line for line in lines)
    assert any("assigning the other 1,300 embeddings" in line for line in lines)
    assert report.n_clusters == 4 and adjusted_rand_score(big_blobs["truth"], report.labels) > 0.95
    assert sum(entry["size"] for entry in report.summary) == 1600
    again = cluster_embeddings(index, min_cluster_size=15, seed=0, max_clustered=300)
    assert np.array_equal(report.labels, again.labels)  # the sample is seeded


def test_cli_cluster_prints_progress_and_caps_the_html_map(big_blobs, tmp_path, capsys, monkeypatch):
    """A long clustering used to print nothing until it ended (> 600 s on 200,000 rows)."""
    monkeypatch.setattr(analytics.report, "MAX_HTML_POINTS", 500)
    code, out, err = run_cli(["cluster", big_blobs["path"], "--out", tmp_path / "rep", "--max-clustered", "400"],
                             capsys)
    assert code == 0, err
    stages = [line for line in err.splitlines() if line.startswith("cluster: [")]
    assert len(stages) >= 6 and any("UMAP to 2-D" in line for line in stages) and any("HDBSCAN" in line for line in stages)
    assert "1600 embeddings (64-d): 4 clusters" in out
    page = (tmp_path / "rep" / "map.html").read_text(encoding="utf-8")
    assert "1,600 embeddings, 4 clusters" in page and "(400 drawn, a random sample)" in page
    assert len((tmp_path / "rep" / "clusters.csv").read_text().splitlines()) == 1601
    code, _, err = run_cli(["cluster", big_blobs["path"], "--out", tmp_path / "rep2", "--no-progress"], capsys)
    assert code == 0 and "cluster: [" not in err


@pytest.mark.parametrize("case", ["missing", "not_parquet", "no_embedding_column", "ragged", "nan"])
def test_cli_bad_index_is_one_line_error(tmp_path, capsys, case):
    path, _ = _bad_index(tmp_path, case)
    query = save_embedding(tmp_path / "q.npy", np.ones(4, dtype=np.float32))
    assert_one_line_error(*run_cli(["search", query, "--index", path], capsys)[::2], path)
    assert_one_line_error(*run_cli(["cluster", path, "--out", tmp_path / "rep"], capsys)[::2], path)


def test_cli_usage_errors(blobs, tmp_path, capsys):
    q64 = save_embedding(tmp_path / "q64.npy", np.ones(64, dtype=np.float32))
    q32 = save_embedding(tmp_path / "q32.npy", np.ones(32, dtype=np.float32))
    assert_one_line_error(*run_cli(["search", q32, "--index", blobs["path"]], capsys)[::2], q32, "32-d", "64-d")
    assert_one_line_error(*run_cli(["similarity", q64, q32], capsys)[::2], q32, "32-d", "64-d")
    assert_one_line_error(*run_cli(["similarity", q64, tmp_path / "gone.npy"], capsys)[::2], "gone.npy", "not found")
    pickled = tmp_path / "evil.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_one_line_error(*run_cli(["similarity", q64, pickled], capsys)[::2], pickled, "pickle")
    assert_one_line_error(*run_cli(["search", q64, "--index", blobs["path"], "--top", "0"], capsys)[::2], "--top")
    big = tmp_path / "rep_is_a_file"
    big.write_text("x")
    code, _, err = run_cli(["cluster", blobs["path"], "--out", big], capsys)
    assert_one_line_error(code, err, big, "not a directory")


def test_cli_search_and_similarity_on_npy(blobs, blob_index, tmp_path, capsys):
    query = save_embedding(tmp_path / "query.npy", blobs["embeddings"][7])
    code, out, _ = run_cli(["search", query, "--index", blobs["path"], "--top", "3"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "similarity", "emotion"] and len(lines) == 4
    assert lines[1].split()[:2] == ["1", "1.0000"] and lines[1].endswith(blob_index.paths[7])
    code, out, _ = run_cli(["search", query, "--index", blobs["path"], "--top", "2", "--json"], capsys)
    data = json.loads(out)
    assert data["dim"] == 64 and [h["row"] for h in data["hits"]][0] == 7 and len(data["hits"]) == 2
    other = tmp_path / "other.bin"  # .npy content under another extension (np.save on a path would add .npy)
    with other.open("wb") as handle:
        np.save(handle, blobs["embeddings"][100])
    code, out, _ = run_cli(["similarity", query, other, "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["cosine_similarity"] == pytest.approx(
        cosine_similarity(blobs["embeddings"][7], blobs["embeddings"][100]), abs=1e-6)
    assert data["model"] is None and data["reading_calibrated"] is False  # no model was loaded


def test_cli_search_and_cluster_print_control_characters_escaped(blobs, tmp_path, capsys):
    """The Parquet's path and emotion are text from outside: printed raw they could forge lines
    or drive the terminal (clear the screen, set its title)."""
    paths = [f"clip\x1b[2J{i}\nforged line.wav" if i % 60 == 7 else p for i, p in enumerate(blobs["paths"])]
    emotions = ["happy\x1b]0;owned\x07" if e is not None else None for e in blobs["emotions"]]
    hostile = write_index(tmp_path / "hostile.parquet", paths, blobs["embeddings"], emotions, blobs["confidences"])
    query = save_embedding(tmp_path / "query.npy", blobs["embeddings"][7])
    code, out, _ = run_cli(["search", query, "--index", hostile, "--top", "3"], capsys)
    assert code == 0 and len(out.strip().splitlines()) == 4
    assert "\x1b" not in out and "\x07" not in out
    assert "clip\\x1b[2J7\\nforged line.wav" in out and "happy\\x1b]0;owned\\x07" in out
    code, out, _ = run_cli(["cluster", hostile, "--out", tmp_path / "rep", "--seed", "0"], capsys)
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "happy\\x1b]0;owned\\x07" in out
    assert len(out.strip().splitlines()) == 3 + 3  # header lines, one per cluster, "wrote"


def test_module_entry_point_exit_code_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "emotion2vec_plus.cli", "search", str(tmp_path / "q.npy"),
                           "--index", str(tmp_path / "none.parquet")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.returncode, done.stderr, "none.parquet")


def test_main_cli_registers_the_commands(blobs, tmp_path, capsys):
    from emotion2vec_plus import cli

    query = save_embedding(tmp_path / "q.npy", blobs["embeddings"][0])
    assert cli.main(["similarity", str(query), str(query)]) == 0
    assert "cosine similarity: 1.0000" in capsys.readouterr().out
    assert cli.main(["search", str(query), "--index", str(tmp_path / "missing.parquet")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# --------------------------------------------------------------------------- real speech
@pytest.fixture(scope="module")
def model():
    from emotion2vec_plus import Emotion2VecPlus

    return Emotion2VecPlus()


@pytest.fixture(scope="module")
def speech(model, tmp_path_factory):
    """12 real RAVDESS clips embedded with the bundled model, as an index file and two .npy files."""
    clips = speech_clips(12)
    results = model.predict_batch(clips, extract_embedding=True, errors="raise")
    embeddings = np.stack([r.embedding for r in results])
    folder = tmp_path_factory.mktemp("speech")
    index_path = write_index(folder / "embeddings.parquet", [str(c) for c in clips], embeddings,
                             [r.emotion for r in results], [r.confidence for r in results])
    npy = [save_embedding(folder / f"clip{i}.npy", model.extract_embedding(clips[i])) for i in (0, 5)]
    return {"clips": clips, "embeddings": embeddings, "index": index_path, "npy": npy}


@pytest.fixture
def shared_model(model, monkeypatch):
    """The CLI builds its model through inference.Emotion2VecPlus; hand it the already loaded one."""
    import emotion2vec_plus.inference as inference

    monkeypatch.setattr(inference, "Emotion2VecPlus", lambda *args, **kwargs: model)
    return model


def test_real_speech_similarity_and_search(speech, model):
    emb = speech["embeddings"]
    assert emb.shape == (12, model.embed_dim) == (12, BUNDLED_DIM)
    assert cosine_similarity(emb[3], emb[3]) == pytest.approx(1.0, abs=1e-6)
    assert describe_similarity(cosine_similarity(emb[3], emb[3])).startswith("practically identical")
    others = [cosine_similarity(emb[3], emb[i]) for i in range(12) if i != 3]
    assert max(others) < 0.99
    index = load_index(speech["index"])
    assert index.dim == BUNDLED_DIM and all(e is not None for e in index.emotions)
    single = model.extract_embedding(speech["clips"][3])  # one by one vs batched: the same clip comes first
    hits = search(index, single, top=12)
    assert hits[0].path == str(speech["clips"][3]) and hits[0].similarity > 0.999
    assert hits[1].similarity < hits[0].similarity and len(hits) == 12


def test_every_set_of_two_or_more_real_clips_gets_a_map(speech):
    """2-4 clips: PCA (UMAP cannot lay them out), not clustered; from 5 on UMAP, clustered with a size
    that suits the set, so a small set is not all noise."""
    index = load_index(speech["index"])
    for n in (2, 3, 4):
        few = EmbeddingIndex.from_arrays(index.paths[:n], index.embeddings[:n], index.emotions[:n], index.confidences[:n])
        report = cluster_embeddings(few)
        assert report.map_method == "pca" and not report.clustered and report.coords.shape == (n, 2)
        assert np.isfinite(report.coords).all() and len({tuple(c) for c in report.coords.round(6).tolist()}) == n
        assert report.n_clusters == 0 and report.summary[0]["size"] == n
        # the map keeps the distances' order: the closest pair by cosine is the closest pair on the map
        cos = few.embeddings @ few.embeddings.T
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        closest = max(pairs, key=lambda p: cos[p])
        assert closest == min(pairs, key=lambda p: np.linalg.norm(report.coords[p[0]] - report.coords[p[1]]))
    report = cluster_embeddings(index)  # 12 clips
    assert report.map_method == "umap" and report.clustered and report.params["min_cluster_size"] <= 3
    assert report.params["min_cluster_size_chosen"].startswith("by set size (3)") or report.params["min_cluster_size"] == 3
    assert report.n_clusters >= 2 and report.n_noise < 12 / 2


@pytest.mark.parametrize("corpus", ["RAVDESS", "CASIA", "EMOVO"])
def test_no_small_real_set_is_all_noise(model, corpus):
    """The sizes picked by set size left some small sets all noise (an all-grey map) with the v3
    embedding: RAVDESS 12 clips, CASIA 6, EMOVO 5; the size is now lowered until less than half of
    the set is noise, where some size gets there (on an AVX2-only CPU the 12 RAVDESS clips had kept
    6 grey at size 3; no size or selection gets 6 CASIA clips below 4)."""
    clips = speech_clips(12, corpus, labelled=True)
    results = model.predict_batch(clips, extract_embedding=True, errors="raise")
    embeddings = np.stack([r.embedding for r in results])
    for n in range(5, 13):
        index = EmbeddingIndex.from_arrays([str(c) for c in clips[:n]], embeddings[:n],
                                           [r.emotion for r in results[:n]], [r.confidence for r in results[:n]])
        lines: list[str] = []
        report = cluster_embeddings(index, progress=lines.append)
        assert report.n_clusters >= 1 and report.n_noise < n, (n, report.params)
        # each retry line names the attempt just before it: sizes go down one at a time
        sizes = [int(line.split(" left as noise at ")[1].split(":")[0]) for line in lines if " left as noise at " in line]
        assert sizes == list(range(sizes[0], sizes[0] - len(sizes), -1)) if sizes else True, lines


def test_nineteen_real_clips_are_not_all_noise_with_the_default_size(model):
    clips = speech_clips(19)
    results = model.predict_batch(clips, extract_embedding=True, errors="raise")
    index = EmbeddingIndex.from_arrays([str(c) for c in clips], np.stack([r.embedding for r in results]),
                                       [r.emotion for r in results], [r.confidence for r in results])
    report = cluster_embeddings(index)
    assert report.n_clusters >= 2 and report.n_noise < 19 / 2, report.to_dict()


def test_cli_similarity_audio_equals_npy(speech, capsys):
    """End to end with a model loaded by the CLI itself (no monkeypatching)."""
    a, b = speech["clips"][0], speech["clips"][5]
    # The .npy files were saved by the Python API in float32; the CLI defaults to compute type auto.
    code, out_audio, err = run_cli(["similarity", a, b, "--json", "--compute-type", "float32"], capsys)
    assert code == 0, err
    code, out_npy, err = run_cli(["similarity", *speech["npy"], "--json"], capsys)
    assert code == 0, err
    audio, npy = json.loads(out_audio), json.loads(out_npy)
    assert audio["cosine_similarity"] == pytest.approx(npy["cosine_similarity"], abs=1e-5)
    assert audio["model"] == "compact" and audio["dim"] == BUNDLED_DIM and audio["reading_calibrated"] is True
    code, out, _ = run_cli(["similarity", a, speech["npy"][1], "--compute-type", "float32"], capsys)  # audio vs .npy
    assert code == 0
    value = float(out.splitlines()[0].split(": ")[1])
    assert out.startswith("cosine similarity: ") and value == pytest.approx(npy["cosine_similarity"], abs=1e-4)
    assert out.splitlines()[1] == f"reading: {describe_similarity(npy['cosine_similarity'])}"


def test_cli_search_with_audio_query(speech, shared_model, capsys):
    code, out, err = run_cli(["search", speech["clips"][4], "--index", speech["index"], "--top", "3", "--json"], capsys)
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert hits[0]["path"] == str(speech["clips"][4]) and hits[0]["similarity"] > 0.999
    assert hits[0]["emotion"] and 0 < hits[0]["confidence"] <= 1


def test_cli_model_dimension_mismatch(speech, blobs, shared_model, tmp_path, capsys):
    clip = speech["clips"][0]
    code, _, err = run_cli(["search", clip, "--index", blobs["path"]], capsys)
    assert_one_line_error(code, err, blobs["path"], "64-d", f"{BUNDLED_DIM}-d", "--model")
    small = save_embedding(tmp_path / "small.npy", np.ones(64, dtype=np.float32))
    code, _, err = run_cli(["similarity", clip, small], capsys)
    assert_one_line_error(code, err, small, "64-d", f"{BUNDLED_DIM}-d")


def test_a_size_mismatch_names_the_embedding_that_does_not_fit_the_model(speech, model, tmp_path):
    from emotion2vec_plus.analytics import compare_inputs
    from emotion2vec_plus.errors import EmbeddingDimensionError

    fits = speech["npy"][0]  # made by the bundled model
    other = save_embedding(tmp_path / "other_model.npy", np.ones(768, dtype=np.float32))
    for a, b in ((other, fits), (fits, other), (other, speech["clips"][0]), (speech["clips"][0], other)):
        with pytest.raises(EmbeddingDimensionError) as caught:
            compare_inputs(a, b, model)
        error = caught.value
        assert (error.source, error.dim, error.reference, error.reference_dim) == (str(other), 768, "compact", BUNDLED_DIM)
        assert str(error).startswith(f"{other}: embedding is 768-d but model compact gives {BUNDLED_DIM}-d")
    with pytest.raises(EmbeddingDimensionError) as caught:  # no model: neither is to blame, both are named
        compare_inputs(other, fits)
    assert str(other) in str(caught.value) and str(fits) in str(caught.value) and not caught.value.reference_is_model


def test_cli_not_audio_is_one_line_error(speech, shared_model, tmp_path, capsys):
    notes = tmp_path / "notes.wav"
    notes.write_text("meeting notes, not audio")
    code, _, err = run_cli(["similarity", speech["npy"][0], notes], capsys)
    assert_one_line_error(code, err, notes)
    code, _, err = run_cli(["search", notes, "--index", speech["index"]], capsys)
    assert_one_line_error(code, err, notes)


# --------------------------------------------------------------------------- emotions over time, comparing inputs
def _frame_result(top_per_frame, hop=0.02, labels=("happy", "neutral", "sad")):
    """Frames whose top class is given per frame (None: a frame outside speech)."""
    from emotion2vec_plus.results import FrameScores, Result

    frames = []
    for i, top in enumerate(top_per_frame):
        scores = [1 / len(labels)] * len(labels)
        if top is not None:
            scores = [0.1] * len(labels)
            scores[labels.index(top)] = 0.8
        frames.append(FrameScores(i * hop, i * hop + 0.025, top, None if top is None else 0.8, scores, speech=top is not None))
    return Result(source="x", model="m", granularity="frame", emotion="happy", confidence=0.8,
                  scores=dict.fromkeys(labels, 1 / len(labels)), frames=frames)


def test_emotion_runs_merge_short_flickers_into_their_neighbours():
    from emotion2vec_plus.analytics import emotion_runs

    frames = ["happy"] * 50 + ["sad"] * 3 + ["happy"] * 20 + ["neutral"] * 40
    runs = emotion_runs(_frame_result(frames), smooth_s=0.0, min_run_s=0.2)
    assert [(r.emotion, round(r.start_s, 2), round(r.end_s, 3)) for r in runs] == [
        ("happy", 0.0, 1.465), ("neutral", 1.46, 2.265)]
    assert runs[0].confidence == pytest.approx((70 * 0.8 + 3 * 0.1) / 73)
    smoothed = emotion_runs(_frame_result(frames), smooth_s=0.5, min_run_s=0.0)
    assert [r.emotion for r in smoothed] == ["happy", "neutral"]


def test_emotion_runs_say_no_speech_outside_speech_and_never_merge_across_it():
    from emotion2vec_plus.analytics import emotion_runs, emotion_timeline

    frames = [None] * 30 + ["sad"] * 60 + [None] * 10 + ["happy"] * 5 + [None] * 40 + ["happy"] * 50
    runs = emotion_runs(_frame_result(frames), smooth_s=0.5, min_run_s=0.5)
    assert [(r.emotion, round(r.start_s, 2)) for r in runs] == [
        (None, 0.0), ("sad", 0.6), (None, 1.8), ("happy", 2.0), (None, 2.1), ("happy", 2.9)]
    assert runs[0].confidence is None and not runs[0].speech and runs[1].speech
    timeline = emotion_timeline(_frame_result(frames))
    assert timeline.speech.tolist() == [f is not None for f in frames]


def test_close_classes_do_not_flicker_the_label():
    """Two classes alternating in the lead by less than the margin keep one label; a clear lead switches it."""
    from emotion2vec_plus.analytics import emotion_runs
    from emotion2vec_plus.results import FrameScores, Result
    from emotion2vec_plus.smoothing import LabelHysteresis

    rows = [[0.46, 0.44, 0.10] if i % 7 < 3 else [0.43, 0.47, 0.10] for i in range(200)] + [[0.1, 0.2, 0.7]] * 100
    frames = [FrameScores(i * 0.02, i * 0.02 + 0.025, "x", max(r), r) for i, r in enumerate(rows)]
    result = Result(source="x", model="m", granularity="frame", scores={"happy": 0.3, "neutral": 0.4, "sad": 0.3},
                    frames=frames)
    runs = emotion_runs(result, smooth_s=0.0, min_run_s=0.0)
    assert [r.emotion for r in runs] == ["happy", "sad"] and runs[1].start_s == pytest.approx(4.0)
    hysteresis = LabelHysteresis(margin=0.1, hold=3)
    assert [hysteresis.update(np.array(r)) for r in ([0.6, 0.4], [0.2, 0.8], [0.2, 0.8], [0.2, 0.8])] == [0, 0, 0, 1]
    assert hysteresis.update(None) is None and hysteresis.update(np.array([0.3, 0.7])) == 1


def test_emotion_runs_and_timeline_of_segments_and_plain_results():
    from emotion2vec_plus.analytics import emotion_runs, emotion_timeline
    from emotion2vec_plus.results import Result, Segment

    plain = Result(source="x", model="m", granularity="utterance", emotion="sad", scores={"sad": 1.0})
    assert emotion_runs(plain) == [] and emotion_timeline(plain) is None
    long = Result(source="x", model="m", granularity="utterance", emotion="sad", scores={"happy": 0.3, "sad": 0.7},
                  segments=[Segment(0, 30, "sad", "难过", "😢", 0.9, {"happy": 0.1, "sad": 0.9}),
                            Segment(30, 55, "happy", "开心", "😊", 0.6, {"happy": 0.6, "sad": 0.4})])
    assert [(r.emotion, r.end_s) for r in emotion_runs(long)] == [("sad", 30), ("happy", 55)]
    timeline = emotion_timeline(long)
    assert timeline.source == "segments" and timeline.probabilities.tolist() == [[0.1, 0.9], [0.6, 0.4]]


def test_emotion_timeline_pools_frames_to_at_most_max_points():
    from emotion2vec_plus.analytics import emotion_timeline

    result = _frame_result(["happy"] * 1001 + ["sad"] * 999)
    timeline = emotion_timeline(result, max_points=100)
    assert len(timeline.starts_s) == 100 and timeline.labels == ["happy", "neutral", "sad"]
    assert np.allclose(timeline.probabilities.sum(axis=1), 1.0)
    assert timeline.starts_s[0] == 0 and timeline.ends_s[-1] == pytest.approx(1999 * 0.02 + 0.025)
    assert timeline.probabilities[0].tolist() == pytest.approx([0.8, 0.1, 0.1])
    full = emotion_timeline(result, smooth_s=0.5)
    assert len(full.starts_s) == 1000  # 2000 frames pooled in pairs
    assert 0.1 < full.probabilities[500, 0] < 0.8  # smoothed across the change at frame 1001


def test_compare_inputs_of_embeddings_without_a_model(tmp_path):
    from emotion2vec_plus.analytics import compare_inputs

    a, b, c = tmp_path / "a.npy", tmp_path / "b.bin", tmp_path / "c.npy"
    save_embedding(a, np.array([1.0, 0.0, 0.0], np.float32))
    save_embedding(b, np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], np.float32))  # (T, D), recognised by content
    save_embedding(c, np.ones(5, np.float32))
    comparison = compare_inputs(a, b, names=("first.npy", "second"))
    assert comparison.similarity == pytest.approx(2 ** -0.5)
    assert comparison.reading == describe_similarity(comparison.similarity) and not comparison.calibrated
    assert comparison.a.kind == comparison.b.kind == "embedding" and comparison.b.shape == (2, 3)
    assert comparison.a.emotion is None  # no model to classify with
    with pytest.raises(ValueError, match="3-d"):
        compare_inputs(a, c)
    pickled = tmp_path / "evil.npy"
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EmbeddingFileError, match="upload.npy.*pickle"):
        compare_inputs(pickled, a, names=("upload.npy", "a"))
    with pytest.raises(EmbeddingFileError, match="no model"):
        compare_inputs(a, _text_file(tmp_path))


def _text_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("hello")
    return path
