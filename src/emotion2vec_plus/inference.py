"""The Python API: :class:`Emotion2VecPlus` loads a model once and recognises emotions in speech.

Inputs of any length are cut into windows (30 s by default), windows of all inputs are
sorted by length and run in padded batches, and the per-window frame features are put back
together per input. Interfaces (CLI, WebUI, REST) call this class; none runs the model itself.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import torch

from .adaptation import MIN_UTTERANCES, Adapter, apply_adapter, training_statistics
from .audio import DEFAULT_MAX_DURATION_S, MIN_SAMPLES, SAMPLE_RATE, Audio, AudioInput, describe_source
from .models.checkpoint import load_checkpoint
from .models.config import checkpoint_files
from .models.compact import CompactEmotionModel, is_compact_file, load_compact_model
from .models.compact import MAX_WINDOW_S as COMPACT_MAX_WINDOW_S
from .models.compact import WINDOW_S as COMPACT_WINDOW_S
from .runtime.compute import Runner, TorchRunner, check_compute_options, choose_compute_type, make_runner
from .defaults import COMPUTE_TYPE_ENV, DEFAULT_MODEL, GRANULARITIES
from .embeddings import utterance_embedding
from .errors import AdapterError, AudioError, Emotion2VecError, ModelError
from .fileio import sha256_file
from .models.hub import canonical_name, resolve_model_dir
from .heads import EmotionHead
from .labels import Label, label_from_name
from .models.emotion2vec import Emotion2vecModel
from .outputs import ProcessedAudioWriter, write_run
from .models.registry import COMPACT_NAME, default_compact_path
from .results import AudioSummary, FrameScores, Result, Segment
from .segmentation import (HOLD_IN_MEMORY_S, MERGE_PAUSE_S, MERGE_SIMILARITY, MIN_PAUSE_S, SEGMENT_CONTEXT_S, LongAudio,
                           Piece, Plan, Scored, UtteranceMerger, load_input, merged_piece, plan_input)
from .streaming import EmotionStream, StreamEvent, stream_file
from .vad import SpeechTrack, speech_pooling_mask, speech_probabilities
from .models.whisper import default_weights_path as default_whisper_weights_path

Granularity = Literal["utterance", "frame"]
#: Most padded audio a batch may hold, as a multiple of its real audio: the encoder computes
#: padding like speech, so a 10 s input batched with three 3 s ones cost 40 s of audio instead
#: of 19 s. On the CPU a batch saves per-call overhead only for short pieces, which batch
#: together anyway (pieces are sorted by length).
PADDING_BUDGET = 1.25
#: emotion2vec+'s default window: clips up to 30 s are scored whole, as FunASR scores them.
EMOTION2VEC_WINDOW_S = 30.0
#: Inputs :meth:`Emotion2VecPlus.adapt` decodes and encodes together.
ADAPT_FILES_PER_GROUP = 32

logger = logging.getLogger(__name__)


@dataclass
class _Chunk:
    """One piece of one input, as it goes through the batched encoder."""

    item: int
    piece: Piece
    samples: np.ndarray
    speech: SpeechTrack | None = None
    """The input's speech probabilities, for a model that pools only speech frames."""


@dataclass
class _Encoded:
    """Encoder output for one piece: its frames (T, D) and their mean (D,)."""

    piece: Piece
    frames: np.ndarray | None
    mean: np.ndarray
    num_frames: int


class Emotion2VecPlus:
    """Speech emotion recognition and emotion embeddings with an emotion2vec(+) model.

    Args:
        model_name: ``"compact"`` (default: the Whisper-base emotion model bundled with the
            package, works offline), ``"large"``, ``"base"``, ``"seed"``, ``"emotion2vec_base_finetuned"``,
            ``"emotion2vec_base"`` (embeddings only), a hub id such as
            ``"iic/emotion2vec_plus_large"``, a local FunASR-format model directory
            (``config.yaml``, ``model.pt``, ``tokens.txt``, as the hubs publish them), or a compact
            model file of one's own (``.safetensors`` in the bundled model's format).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when available).
        hub: ``"hf"`` (Hugging Face) or ``"ms"`` (ModelScope); default from ``EMOTION2VEC_HUB``.
        cache_dir: where downloaded models are kept; default from ``EMOTION2VEC_CACHE``.
        download: fetch a missing model from the hub (set ``False`` to stay offline).
        num_threads: PyTorch intra-op threads (process-wide, like faster-whisper's
            ``cpu_threads``); ``None`` keeps PyTorch's choice.
        batch_size: most windows per forward pass.
        max_batch_seconds: most padded audio per forward pass, bounding memory.
        window_s: the longest stretch of audio scored as one piece (default: the model's, 10 s
            for the compact model, 30 s for emotion2vec+). An input up to this long is scored
            whole, as FunASR scores it. A longer one is scored utterance by utterance (Silero VAD;
            an utterance longer than the window is split at its quietest points): each becomes one
            of the result's ``segments``, and the utterance-level scores and embedding are the
            segments' weighted by their speech duration.
        min_pause_s: a pause at least this long separates two utterances (segments). An input
            within the window that holds several utterances also gets them as ``segments``, each
            scored whole (its own result stays the whole input's).
        merge_pause_s, merge_similarity: two neighbouring utterances whose pause is shorter than
            ``merge_pause_s`` and whose class scores have a cosine similarity of at least
            ``merge_similarity`` are one segment, scored whole again (while it fits the window);
            ``merge_pause_s=0`` never merges. Needs a head (the scores decide).
        max_duration_s: longer inputs are refused (``AudioTooLongError``).
        hold_in_memory_s: an encoded input (path, bytes, file object) up to this long is decoded into
            memory whole; a longer one is streamed twice (once through the voice-activity detector,
            once cutting out the pieces to score), so memory does not grow with its length.
        head: a custom head (``EmotionHead`` or the path of one saved by ``train-head``) that
            replaces the model's own classes, e.g. ``["hesitant", "confident"]``; it must have
            been trained on this model's embeddings.
        compute_type: ``"auto"`` (default: the fastest for this CPU, see
            :func:`~emotion2vec_plus.runtime.compute.choose_compute_type`), ``"float32"`` (FunASR's
            numbers exactly), ``"int8"`` (dynamic int8 quantisation of the encoder's linear layers,
            CPU) or ``"bfloat16"`` (encoder under bf16 autocast, torch only). ``None`` takes
            ``$EMOTION2VEC_COMPUTE_TYPE`` when set, else ``"auto"``. The choice and why are in
            :attr:`compute_type` and :attr:`compute_type_reason`, and in every result.
        backend: ``"torch"`` (default) or ``"onnx"`` (the model exported once to ONNX, cached under
            ``<cache_dir>/onnx/``, and run with onnxruntime; needs ``pip install "emotion2vec-plus[onnx]"``).
            Only the encoder changes: the head, windows and results are the same code in every mode.
        adapter: an :class:`~emotion2vec_plus.adaptation.Adapter` (or the path of one saved by
            :meth:`adapt` / ``emotion2vec-plus adapt``) that re-maps the compact model's projection
            inputs from a user's recordings' statistics onto the training set's; bundled compact
            model only. Every result records it (:attr:`adapter_description`).
        score_whole: score an input within the window whole (True: FunASR's way, emotion2vec+'s
            default) or, like a longer one, by its utterances pooled by speech time (False), so that
            an utterance gets the same score alone as inside a recording. ``None``: the model's own
            way (a compact model file says ``scoring: utterances`` to be scored by its utterances).
    """

    def __init__(
        self,
        model_name: str | os.PathLike = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        hub: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        download: bool = True,
        num_threads: int | None = None,
        batch_size: int = 8,
        max_batch_seconds: float = 120.0,
        window_s: float | None = None,
        min_pause_s: float = MIN_PAUSE_S,
        merge_pause_s: float = MERGE_PAUSE_S,
        merge_similarity: float = MERGE_SIMILARITY,
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
        hold_in_memory_s: float = HOLD_IN_MEMORY_S,
        head: str | os.PathLike | EmotionHead | None = None,
        compute_type: str | None = None,
        backend: str = "torch",
        adapter: str | os.PathLike | Adapter | None = None,
        score_whole: bool | None = None,
    ) -> None:
        if window_s is not None and window_s * SAMPLE_RATE < MIN_SAMPLES:
            raise ValueError(f"window_s must be at least {MIN_SAMPLES / SAMPLE_RATE} s, got {window_s}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        self.device = _resolve_device(device)
        #: Why this compute type runs: the rule's reason for ``"auto"``, else how it was asked for.
        self.compute_type_reason = "asked for"
        if compute_type is None:
            compute_type = os.environ.get(COMPUTE_TYPE_ENV) or "auto"
            if compute_type != "auto":
                self.compute_type_reason = f"{COMPUTE_TYPE_ENV}={compute_type}"
        compact = str(model_name) == COMPACT_NAME or is_compact_file(model_name)
        if compute_type == "auto":
            compute_type, reason = choose_compute_type(backend, self.device, compact=compact)
            self.compute_type_reason = f"auto: {reason}"
        check_compute_options(compute_type, backend, self.device)
        started = time.perf_counter()
        model: Emotion2vecModel | CompactEmotionModel
        #: sha256 of the compact model file (None for emotion2vec+): what adapters are checked against.
        self.compact_sha256: str | None = None
        if compact:
            window_s = COMPACT_WINDOW_S if window_s is None else window_s
            if window_s > COMPACT_MAX_WINDOW_S:
                raise ValueError(f"the compact model takes windows of at most {COMPACT_MAX_WINDOW_S:g} s, got window_s={window_s}")
            compact_file = default_compact_path() if str(model_name) == COMPACT_NAME else Path(model_name)
            self.model_dir = compact_file.parent
            model, labels = load_compact_model(compact_file)
            self.model_name = COMPACT_NAME if str(model_name) == COMPACT_NAME else str(compact_file)
            source_files = [compact_file, default_whisper_weights_path()]
            self.compact_sha256 = sha256_file(compact_file)
        else:
            window_s = EMOTION2VEC_WINDOW_S if window_s is None else window_s
            self.model_dir = resolve_model_dir(model_name, hub=hub, cache_dir=cache_dir, download=download)
            model, labels = load_checkpoint(self.model_dir)
            self.model_name = canonical_name(str(model_name)) or str(model_name)
            files = checkpoint_files(self.model_dir)
            source_files = [files.config, files.weights]
        self.model = model.to(self.device)
        self.compute_type, self.backend = compute_type, backend
        self.adapter: Adapter | None = None
        if adapter is not None:  # before the runner is made: an ONNX export includes the adapted projection
            self._set_adapter(adapter)
        self._runner_options = dict(compute_type=compute_type, backend=backend, device=self.device,
                                    model_name=self.model_name, source_files=source_files, cache_dir=cache_dir,
                                    num_threads=num_threads)
        # The one place the encoder is run from (float32 / int8 / bf16, PyTorch or onnxruntime).
        self._runner = make_runner(self.model, **self._runner_options)
        self.load_time_s = time.perf_counter() - started
        self._labels = labels
        #: Which of the model's own head's classes it was trained on (the rest are left out, as FunASR does).
        self._used = np.array([not label.unused for label in labels], dtype=bool)
        self.batch_size = batch_size
        self.max_batch_samples = int(max_batch_seconds * SAMPLE_RATE)
        self.window_samples = int(window_s * SAMPLE_RATE)
        if min_pause_s < 0.1:
            raise ValueError(f"min_pause_s must be at least 0.1 s (the voice-activity detector's resolution), got {min_pause_s}")
        self.min_pause_s = min_pause_s
        if merge_pause_s < 0 or not -1.0 <= merge_similarity <= 1.0:
            raise ValueError(f"merge_pause_s must be at least 0 and merge_similarity between -1 and 1, got "
                             f"{merge_pause_s} and {merge_similarity}")
        self.merge_pause_s = merge_pause_s
        self.merge_similarity = merge_similarity
        #: Pause scored with each segment on either side, at most (:class:`~emotion2vec_plus.segmentation.SegmentPlanner`).
        self.segment_context_s = SEGMENT_CONTEXT_S
        self.max_duration_s = max_duration_s
        if hold_in_memory_s * SAMPLE_RATE < self.window_samples:
            raise ValueError(f"hold_in_memory_s must be at least one window ({window_s} s), got {hold_in_memory_s}")
        self.hold_in_memory_s = hold_in_memory_s
        #: What an utterance's embedding averages: ``"frames"`` or ``"speech"`` (:attr:`CompactSpec.pooling`).
        self.pooling: str = getattr(self.model, "pooling", "frames")
        #: An input within the window is scored whole (FunASR's way), else by its utterances.
        self.score_whole: bool = (getattr(self.model, "scoring", "whole") == "whole") if score_whole is None else score_whole
        self.custom_head: EmotionHead | None = None
        if head is not None:
            self.custom_head = self._checked_head(head)
            self._labels = [label_from_name(name) for name in self.custom_head.labels]

    @classmethod
    def from_pretrained(cls, model_name: str | os.PathLike = DEFAULT_MODEL, **kwargs) -> "Emotion2VecPlus":
        """Same as the constructor, named as in pyannote / Hugging Face."""
        return cls(model_name, **kwargs)

    # ----------------------------------------------------------------- model facts
    @property
    def embed_dim(self) -> int:
        """Dimension D of embeddings and frame features (768 or 1024)."""
        return self.model.embed_dim

    @property
    def has_head(self) -> bool:
        """False for embedding-only models (``emotion2vec_base``) without a custom head."""
        return self.custom_head is not None or self.model.head is not None

    @property
    def labels(self) -> list[Label]:
        """Classes reported in results, in model order (placeholder ``unuse`` classes left out)."""
        return [label for label in self._labels if not label.unused]

    @property
    def all_labels(self) -> list[Label]:
        """Every class of the head in its output order, placeholder ``unuse`` classes included
        (the order of an exported graph's scores)."""
        return list(self._labels)

    def describe(self) -> str:
        """One line for logs: model, dimension, compute type (and why, when chosen by ``"auto"``), backend."""
        compute = self.compute_type if self.compute_type_reason == "asked for" else (
            f"{self.compute_type} ({self.compute_type_reason})")
        adapted = "" if self.adapter is None else f", adapter {self.adapter_description}"
        return f"model {self.model_name} ({self.embed_dim}-d), compute type {compute}, backend {self.backend}{adapted}"

    @property
    def adapter_description(self) -> str:
        """The adapter in use as results record it: its file name and digest, or ``"none"``."""
        return "none" if self.adapter is None else self.adapter.describe()

    @property
    def frame_rate(self) -> float:
        """Frames per second of frame-level features (50)."""
        return SAMPLE_RATE / self.model.hop_samples

    # ----------------------------------------------------------------- public API
    def extract_embedding(self, audio: AudioInput, granularity: Granularity = "utterance", *,
                          sample_rate: int | None = None) -> np.ndarray:
        """The emotion embedding of one input: (D,) for ``"utterance"``, (T, D) at 50 Hz for ``"frame"``."""
        result = self.predict(audio, granularity=granularity, extract_embedding=True, sample_rate=sample_rate,
                              segments=False)
        assert result.embedding is not None
        return result.embedding

    def classify_embedding(self, embedding: np.ndarray,
                           head: str | os.PathLike | EmotionHead | None = None) -> dict[str, float]:
        """Class probabilities (English label -> probability, summing to 1) for an embedding.

        Accepts an utterance embedding (D,) or frame features (T, D); frames are averaged
        first, exactly as the model scores a whole clip. ``head`` scores with a custom head
        (trained on this model's embeddings) instead of the model's own.
        """
        array = utterance_embedding(np.asarray(embedding, dtype=np.float32))
        if array.ndim != 1 or array.shape[0] != self.embed_dim:
            raise ValueError(f"expected an embedding of shape ({self.embed_dim},) or (T, {self.embed_dim}), got {np.shape(embedding)}")
        if head is not None:
            custom = self._checked_head(head)
            return {name: float(p) for name, p in zip(custom.labels, custom.predict_proba(array[None])[0])}
        probs = self._probabilities(array[None])[0]
        return {label.english: float(p) for label, p in zip(self.labels, probs)}

    def predict(
        self,
        audio: AudioInput,
        granularity: Granularity = "utterance",
        extract_embedding: bool = False,
        *,
        sample_rate: int | None = None,
        name: str | None = None,
        output_dir: str | os.PathLike | None = None,
        segments: bool = True,
    ) -> Result:
        """Recognise the emotion of one input; raises a typed error for bad input.

        With ``output_dir`` the run is also saved as ``output_dir/outputs_YYYYMMDD_HHMMSS/``.
        ``segments=False`` leaves out the segments of an input within the window (scored whole,
        its utterances are otherwise each scored again: up to twice the work when it is mostly
        speech); an input longer than the window is always pooled from, and reports, its segments.
        """
        _check_granularity(granularity)
        started = time.perf_counter()
        decoded = load_input(audio, sample_rate=sample_rate, name=name, max_duration_s=self.max_duration_s,
                             hold_in_memory_s=self.hold_in_memory_s)
        if isinstance(decoded, LongAudio):
            return self._predict_long(decoded, granularity, extract_embedding, started=started, output_dir=output_dir)
        result = self._predict_decoded([decoded], granularity, extract_embedding, segments=segments)[0]
        result.processing_time_s = time.perf_counter() - started
        if output_dir is not None:
            write_run(result, decoded.samples, output_dir)
        return result

    def predict_batch(
        self,
        audios: Sequence[AudioInput | Audio],
        granularity: Granularity = "utterance",
        extract_embedding: bool = False,
        *,
        batch_size: int | None = None,
        errors: Literal["collect", "raise"] = "collect",
        output_dir: str | os.PathLike | None = None,
        segments: bool = True,
    ) -> list[Result]:
        """Recognise many inputs, batching windows of similar length together.

        Inputs may also be :class:`~emotion2vec_plus.audio.Audio` objects already decoded by
        :func:`~emotion2vec_plus.audio.load_audio`, or what
        :func:`~emotion2vec_plus.segmentation.load_input` gives. An input longer than
        :attr:`hold_in_memory_s` is streamed and scored on its own, with memory bounded whatever its
        length. With ``errors="collect"`` (default) an input
        that cannot be decoded gives a
        ``Result`` with ``error`` set and the others are still processed; ``"raise"``
        stops at the first bad input. Results come back in input order. ``segments``: as in
        :meth:`predict`.
        """
        _check_granularity(granularity)
        started = time.perf_counter()
        decoded: list[Audio | LongAudio | None] = []
        failures: dict[int, str] = {}
        for index, audio in enumerate(audios):
            if isinstance(audio, (Audio, LongAudio)):  # already decoded, e.g. by a batch job's decoding threads
                decoded.append(audio)
                continue
            try:
                decoded.append(load_input(audio, max_duration_s=self.max_duration_s,
                                          hold_in_memory_s=self.hold_in_memory_s))
            except Emotion2VecError as exc:
                if errors == "raise":
                    raise
                failures[index] = str(exc)
                decoded.append(None)
        held = [d for d in decoded if isinstance(d, Audio)]
        results = iter(self._predict_decoded(held, granularity, extract_embedding, batch_size=batch_size,
                                             segments=segments))
        elapsed_each = (time.perf_counter() - started) / max(len(audios), 1)
        out: list[Result] = []
        for index, item in enumerate(decoded):
            if item is None:
                out.append(self._failed(describe_source(audios[index]), granularity, failures[index]))
            elif isinstance(item, LongAudio):
                try:
                    out.append(self._predict_long(item, granularity, extract_embedding, batch_size=batch_size,
                                                  started=time.perf_counter(), output_dir=output_dir))
                except Emotion2VecError as exc:
                    if errors == "raise":
                        raise
                    out.append(self._failed(item.info.source, granularity, str(exc)))
            else:
                result = next(results)
                result.processing_time_s = elapsed_each
                if output_dir is not None:
                    write_run(result, item.samples, output_dir)
                out.append(result)
        return out

    def score_samples(self, pieces: Sequence[np.ndarray], speech: Sequence[SpeechTrack | None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Score decoded 16 kHz mono pieces, each whole, in length-sorted batches: class
        probabilities (N, C) in :attr:`labels` order and utterance embeddings (N, D). What a
        live stream (:meth:`stream`) scores its windows and utterances with. ``speech`` gives
        each piece's speech probabilities for a model that pools only speech (:attr:`pooling`;
        without them such a piece's own are computed)."""
        self._require_head()
        tracks = list(speech) if speech is not None else [None] * len(pieces)
        if len(tracks) != len(pieces):
            raise ValueError(f"{len(pieces)} pieces but {len(tracks)} speech tracks")
        chunks = [_Chunk(item=i, piece=Piece(0, len(p), len(p), 0, len(p)), samples=np.asarray(p, np.float32),
                         speech=track) for i, (p, track) in enumerate(zip(pieces, tracks))]
        if not chunks:
            return np.zeros((0, len(self.labels)), np.float32), np.zeros((0, self.embed_dim), np.float32)
        if min(len(c.samples) for c in chunks) < MIN_SAMPLES:
            raise ValueError(f"every piece needs at least {MIN_SAMPLES} samples (25 ms)")
        means = np.stack([e.mean for e in self._encode_chunks(chunks, False, self.batch_size)]).astype(np.float32)
        return self._probabilities(means), means

    def stream(self, *, sample_rate: int = SAMPLE_RATE, hop_s: float = 0.5, window_s: float = 3.0,
               min_speech_s: float = 1.0, embeddings: bool = False, **options) -> "EmotionStream":
        """A live stream: ``push`` samples (any rate) as they arrive, get events
        (:class:`~emotion2vec_plus.streaming.StreamEvent`): provisional ``emotion`` every ``hop_s``
        over the last ``window_s`` seconds, and a final ``utterance`` for each utterance, scored
        as :meth:`predict` scores its segments. See :class:`~emotion2vec_plus.streaming.EmotionStream`."""
        return EmotionStream(self, sample_rate=sample_rate, hop_s=hop_s, window_s=window_s,
                             min_speech_s=min_speech_s, embeddings=embeddings, **options)

    def stream_file(self, audio: AudioInput, *, realtime: bool = False, **options) -> Iterator["StreamEvent"]:
        """The live events of a file (any input :meth:`predict` takes), streamed block by block;
        ``realtime`` paces it as a live source would. Options as for :meth:`stream`."""
        return stream_file(self, audio, realtime=realtime, **options)

    # ----------------------------------------------------------------- adaptation
    def adapt(self, paths: str | os.PathLike | Sequence[str | os.PathLike], output: str | os.PathLike | None = None,
              *, min_utterances: int = MIN_UTTERANCES) -> Adapter:
        """Statistics of a user's recordings (no labels) that adapt the bundled compact model to them.

        Each file is decoded and cut into utterances exactly as :meth:`predict` cuts it (a file
        within the window is one utterance; a longer one gives one per speech segment), and each
        utterance contributes its projection input pooled over its frames. The recordings should
        span the emotions expected: the statistics of an all-angry set would re-centre angry to
        neutral. A file that cannot be decoded (or holds no speech) is reported in
        :attr:`Adapter.skipped` (and logged at INFO) and the others are used. With ``output`` the adapter
        is also saved there. Apply it with :meth:`apply_adapter` or ``Emotion2VecPlus(adapter=...)``.

        Raises:
            AdapterError: the model is not the bundled compact model.
            ValueError: fewer than ``min_utterances`` utterances were found.
        """
        training = self._training_statistics()
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        runner = TorchRunner(self.model, self.compute_type if self.backend == "torch" else "float32", self.device,
                             method="projection_input_frames")
        rows: list[np.ndarray] = []
        skipped: list[tuple[str, str]] = []
        used_files = 0
        held: list[tuple[Audio, np.ndarray, list[Piece]]] = []

        def skip(source: str, reason: str) -> None:
            logger.info("adapt: skipped %s: %s", source, reason)  # returned in Adapter.skipped; callers report it
            skipped.append((source, reason))

        def encode_held() -> None:
            chunks = [_Chunk(item, piece, audio.samples[piece.start : piece.end], SpeechTrack(probabilities, -piece.start))
                      for item, (audio, probabilities, pieces) in enumerate(held) for piece in pieces]
            rows.extend(e.mean for e in self._encode_chunks(chunks, False, self.batch_size, runner))
            held.clear()

        for item in items:
            source = describe_source(item)
            try:
                decoded = load_input(item, max_duration_s=self.max_duration_s, hold_in_memory_s=self.hold_in_memory_s)
                probabilities = decoded.probabilities if isinstance(decoded, LongAudio) else speech_probabilities(decoded.samples)
                plan = self._plan(decoded.num_samples, probabilities, "utterance")
                if not plan.speech_found:
                    skip(source, "no speech detected")
                    continue
                pieces = plan.pieces()
                utterances = pieces[:1] if plan.whole else [p for p in pieces if p.speech > 0]
                if isinstance(decoded, LongAudio):
                    rows.extend(e.mean for e in self._encode_streamed(decoded, utterances, False, self.batch_size,
                                                                      None, runner, speech=probabilities))
                else:
                    held.append((decoded, probabilities, utterances))
                    if len(held) >= ADAPT_FILES_PER_GROUP:
                        encode_held()
            except Emotion2VecError as exc:
                skip(source, str(exc))
                continue
            used_files += 1
        if held:
            encode_held()
        if len(rows) < min_utterances:
            unusable = f"; {len(skipped)} file(s) could not be used" if skipped else ""
            raise ValueError(f"adaptation needs at least {min_utterances} utterances, found {len(rows)} in "
                             f"{used_files} file(s){unusable}: the statistics need recordings spanning the emotions "
                             "expected (more files, or longer recordings with pauses between utterances)")
        adapter = Adapter.from_projection_inputs(np.stack(rows), training.model_sha256,
                                                 source=f"{len(rows)} utterances from {used_files} file(s)",
                                                 num_files=used_files)
        adapter.skipped = skipped
        if output is not None:
            adapter.save(output)
        return adapter

    def apply_adapter(self, adapter: str | os.PathLike | Adapter | None) -> None:
        """Use ``adapter`` (an :class:`Adapter` or its file) from now on; ``None`` goes back to the
        model's own projection. Adapters replace each other, they never stack."""
        self._set_adapter(adapter)
        if self.backend == "onnx":  # the exported graph holds the projection: export (or reuse) the adapted one
            self._runner = make_runner(self.model, **self._runner_options)

    def _set_adapter(self, adapter: str | os.PathLike | Adapter | None) -> None:
        training = self._training_statistics()
        loaded = None if adapter is None else adapter if isinstance(adapter, Adapter) else Adapter.load(adapter)
        assert isinstance(self.model, CompactEmotionModel)
        apply_adapter(self.model, loaded, training)
        self.adapter = loaded

    def _training_statistics(self) -> Adapter:
        if not isinstance(self.model, CompactEmotionModel) or self.compact_sha256 is None:
            raise AdapterError(f"adaptation is for the bundled compact model; model {self.model_name!r} "
                               "(emotion2vec+) cannot be adapted")
        return training_statistics(self.compact_sha256)

    def _failed(self, source: str, granularity: str, error: str) -> Result:
        return Result(source=source, model=self.model_name, granularity=granularity, error=error,
                      compute_type=self.compute_type, backend=self.backend, compute_type_reason=self.compute_type_reason,
                      adapter=self.adapter_description)

    @torch.inference_mode()
    def encode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance embeddings (B, D) of a padded 16 kHz batch (SpeechBrain style).

        ``wav_lens`` are relative lengths in (0, 1] (1 = the full padded width).
        """
        frames, lengths, num_samples = self._forward(wavs, wav_lens)
        if self.pooling == "speech":
            rows = torch.as_tensor(wavs, dtype=torch.float32).reshape(len(frames), -1)
            return torch.from_numpy(np.stack([
                self._pool(frames[row, : int(lengths[row])].numpy(), rows[row, : int(num_samples[row])].numpy())
                for row in range(len(frames))]))
        mask = (torch.arange(frames.shape[1])[None, :] < lengths[:, None]).to(frames.dtype)
        return (frames * mask[..., None]).sum(1) / lengths[:, None].clamp_min(1).to(frames.dtype)

    @torch.inference_mode()
    def classify_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """Classify a padded 16 kHz batch: ``(probabilities (B, C), best score (B,), best index (B,), labels)``."""
        self._require_head()
        embeddings = self.encode_batch(wavs, wav_lens).cpu().numpy()
        probs = torch.from_numpy(self._probabilities(embeddings))
        score, index = probs.max(dim=-1)
        return probs, score, index, [label.english for label in self.labels]

    # ----------------------------------------------------------------- internals
    def _require_head(self) -> None:
        if not self.has_head:
            raise ModelError(f"model {self.model_name!r} has no emotion classifier head; it only gives embeddings")

    def _checked_head(self, head: str | os.PathLike | EmotionHead) -> EmotionHead:
        """Load a custom head and refuse one trained on another model's embeddings."""
        loaded = head if isinstance(head, EmotionHead) else EmotionHead.load(head)
        loaded.check_embedding_model(self.model_name, self.embed_dim)
        return loaded

    def _probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities for rows of (N, D) features: the custom head's, or a softmax over
        the used classes of the model's own head."""
        self._require_head()
        if self.custom_head is not None:
            return self.custom_head.predict_proba(np.asarray(embeddings, dtype=np.float32))
        return self._own_probabilities(embeddings)

    def alike_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """The class scores that decide which neighbouring utterances look alike (and merge), for
        rows of (N, D) utterance embeddings: the model's own emotion head's, the scores the rule
        was measured with, even when a custom head reports other classes; a custom head's only
        for a model without a head of its own."""
        return self._own_probabilities(embeddings) if self.model.head is not None else self._probabilities(embeddings)

    def _own_probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Softmax over the used classes of the model's own head, as FunASR gives them."""
        head = self.model.head
        assert head is not None
        with torch.inference_mode():
            logits = head(torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)).to(self.device))
            logits = logits.float().cpu()
            # FunASR sets unused classes to -inf before the softmax, then drops them.
            logits[:, torch.from_numpy(~self._used)] = float("-inf")
            probs = torch.softmax(logits, dim=-1).numpy()
        return probs[:, self._used]

    def _forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frames (B, T, D), frame counts (B,), sample counts (B,)) of a padded batch."""
        wavs = torch.as_tensor(wavs, dtype=torch.float32)
        if wavs.dim() == 1:
            wavs = wavs[None]
        width = wavs.shape[1]
        if wav_lens is None:
            num_samples = torch.full((wavs.shape[0],), width, dtype=torch.long)
        else:
            num_samples = torch.round(torch.as_tensor(wav_lens, dtype=torch.float64) * width).long()
        out = self._runner(wavs.to(self.device), num_samples.to(self.device))
        return out.frames.float().cpu(), out.lengths.cpu(), num_samples

    def _encode_chunks(self, chunks: list[_Chunk], keep_frames: bool, batch_size: int,
                       runner: Runner | None = None) -> list[_Encoded]:
        """Run all pieces through the model (or ``runner``) in length-sorted, padded batches."""
        runner = runner or self._runner
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i].samples), reverse=True)
        encoded: list[_Encoded | None] = [None] * len(chunks)
        position = 0
        while position < len(order):
            longest = len(chunks[order[position]].samples)
            fit = max(1, min(batch_size, self.max_batch_samples // max(longest, 1)))
            batch, real = [order[position]], longest
            for index in order[position + 1 : position + fit]:
                length = len(chunks[index].samples)
                if (len(batch) + 1) * longest > PADDING_BUDGET * (real + length):
                    break
                batch.append(index)
                real += length
            position += len(batch)
            wavs = torch.zeros(len(batch), longest)
            lengths = torch.tensor([len(chunks[i].samples) for i in batch])
            for row, index in enumerate(batch):
                wavs[row, : lengths[row]] = torch.from_numpy(chunks[index].samples)
            out = runner(wavs.to(self.device), lengths.to(self.device))
            frames = out.frames.float().cpu().numpy()
            if not np.isfinite(frames[np.arange(frames.shape[1])[None, :] < out.lengths.cpu().numpy()[:, None]]).all():
                raise ModelError(f"model {self.model_name!r} produced NaN or infinite values on finite audio: its weights "
                                 f"may be damaged ({self.model_dir}); reinstall or download the model again")
            for row, index in enumerate(batch):
                valid = frames[row, : int(out.lengths[row])]
                encoded[index] = _Encoded(piece=chunks[index].piece, frames=valid.copy() if keep_frames else None,
                                          mean=self._pool(valid, chunks[index].samples, chunks[index].speech),
                                          num_frames=valid.shape[0])
        return [e for e in encoded if e is not None]

    def _pool(self, frames: np.ndarray, samples: np.ndarray, speech: SpeechTrack | None = None) -> np.ndarray:
        """A piece's utterance vector from its frames: their mean, or the mean of its speech frames
        only for a model trained that way (``speech``: the probabilities around the piece; computed
        from its ``samples`` when not given)."""
        if self.pooling != "speech" or not len(frames):
            return frames.mean(axis=0)
        track = speech if speech is not None else SpeechTrack(speech_probabilities(samples))
        return frames[speech_pooling_mask(track, len(frames), self.model.hop_samples)].mean(axis=0)

    def _plan(self, num_samples: int, probabilities: np.ndarray, granularity: str) -> Plan:
        return plan_input(num_samples, self.window_samples, probabilities, min_pause_s=self.min_pause_s,
                          context_s=self.segment_context_s, frames=granularity == "frame",
                          whole_within_window=self.score_whole)

    def _predict_decoded(self, decoded: list[Audio], granularity: str, extract_embedding: bool,
                         batch_size: int | None = None, segments: bool = True) -> list[Result]:
        chunks: list[_Chunk] = []
        speech = [speech_probabilities(audio.samples) for audio in decoded]
        plans = [self._plan(audio.num_samples, probabilities, granularity) for audio, probabilities in zip(decoded, speech)]
        for item, (audio, plan) in enumerate(zip(decoded, plans)):
            chunks += [_Chunk(item=item, piece=piece, samples=audio.samples[piece.start : piece.end],
                              speech=SpeechTrack(speech[item], -piece.start))
                       for piece in plan.pieces(segments)]
        encoded = self._encode_chunks(chunks, granularity == "frame", batch_size or self.batch_size)
        per_item: list[list[_Encoded]] = [[] for _ in decoded]
        for chunk, enc in zip(chunks, encoded):
            per_item[chunk.item].append(enc)
        groups = [self._merge_groups(_segments_of(plan, pieces)) for plan, pieces in zip(plans, per_item)]
        again = [_Chunk(item=item, piece=piece, samples=decoded[item].samples[piece.start : piece.end],
                        speech=SpeechTrack(speech[item], -piece.start))
                 for item, item_groups in enumerate(groups) for piece in _merged_pieces(item_groups)]
        rescored = iter(self._encode_chunks(again, False, batch_size or self.batch_size))
        return [self._assemble(audio, plan, pieces, granularity, extract_embedding,
                               segments=_merged_segments(item_groups, rescored))
                for audio, plan, pieces, item_groups in zip(decoded, plans, per_item, groups)]

    def _merge_groups(self, segments: list[_Encoded]) -> list[list[Scored]] | None:
        """The segments grouped by :class:`~emotion2vec_plus.segmentation.UtteranceMerger`, or None
        when none merge (or merging is off, or there is no head to say what is alike)."""
        if len(segments) < 2 or self.merge_pause_s <= 0 or not self.has_head:
            return None
        merger = UtteranceMerger(self.window_samples, merge_pause_s=self.merge_pause_s,
                                 similarity=self.merge_similarity)
        probs = self.alike_scores(np.stack([segment.mean for segment in segments]))
        groups = [group for segment, row in zip(segments, probs) for group in merger.push(Scored(segment.piece, row, segment))]
        groups += merger.finish()
        return groups if any(len(group) > 1 for group in groups) else None

    def _predict_long(self, audio: LongAudio, granularity: str, extract_embedding: bool, *,
                      batch_size: int | None = None, started: float,
                      output_dir: str | os.PathLike | None = None) -> Result:
        """Score an input too long to hold in memory: decode it again and cut its planned pieces out
        as they pass, running the encoder whenever a batch of them is ready."""
        plan = self._plan(audio.num_samples, audio.probabilities, granularity)
        with ProcessedAudioWriter(output_dir) if output_dir is not None else nullcontext() as writer:
            encoded = self._encode_streamed(audio, plan.pieces(), granularity == "frame", batch_size or self.batch_size,
                                            writer, speech=audio.probabilities)
            groups = self._merge_groups(_segments_of(plan, encoded))
            # Merged groups are decoded a third time, cut out as they pass (memory stays bounded).
            rescored = iter(self._encode_streamed(audio, _merged_pieces(groups), False, batch_size or self.batch_size,
                                                  None, speech=audio.probabilities) if groups else [])
            result = self._assemble(audio, plan, encoded, granularity, extract_embedding,
                                    segments=_merged_segments(groups, rescored))
            result.processing_time_s = time.perf_counter() - started
            if writer is not None:
                write_run(result, writer, output_dir)
        return result

    def _encode_streamed(self, audio: LongAudio, pieces: list[Piece], keep_frames: bool, batch_size: int,
                         writer: ProcessedAudioWriter | None, runner: Runner | None = None, *,
                         speech: np.ndarray | None = None) -> list[_Encoded]:
        """Decode a long input again, block by block (each block also to ``writer``), and encode
        ``pieces`` (in input order) as they pass, a batch at a time (``speech``: the input's
        speech probabilities, for speech pooling)."""
        encoded: list[_Encoded] = []
        ready: list[_Chunk] = []
        buffer = np.zeros(0, np.float32)
        buffer_start = 0  # input position of buffer[0]
        next_piece = 0

        def encode_ready() -> None:
            encoded.extend(self._encode_chunks(ready, keep_frames, batch_size, runner))
            ready.clear()

        def take(block: np.ndarray) -> None:
            nonlocal buffer, buffer_start, next_piece
            if writer is not None:
                writer.write(block)
            buffer = np.concatenate([buffer, block])
            end = buffer_start + len(buffer)
            while next_piece < len(pieces) and pieces[next_piece].end <= end:
                piece = pieces[next_piece]
                ready.append(_Chunk(0, piece, buffer[piece.start - buffer_start : piece.end - buffer_start].copy(),
                                    SpeechTrack(speech, -piece.start) if speech is not None else None))
                next_piece += 1
                if len(ready) >= batch_size or sum(len(c.samples) for c in ready) >= self.max_batch_samples:
                    encode_ready()
            keep_from = pieces[next_piece].start if next_piece < len(pieces) else end
            if keep_from > buffer_start:  # nothing before the next piece is needed again
                buffer = buffer[keep_from - buffer_start :].copy()
                buffer_start = min(keep_from, end)

        audio.stream(take)
        if next_piece < len(pieces):
            raise AudioError(audio.info.source, "the input changed while it was being read: it is shorter "
                             "than on the first pass")
        if ready:
            encode_ready()
        return encoded

    def _assemble(self, audio: Audio | LongAudio, plan: Plan, pieces: list[_Encoded], granularity: str,
                  extract_embedding: bool, segments: list[_Encoded] | None = None) -> Result:
        """One input's result from its encoded pieces (in the order of ``plan.pieces()``): an input
        scored whole (within the window, as FunASR does) has its utterances, when it has several, as
        its segments; any other pools its segments, weighted by the speech each holds (and reports
        them unless it is within the window and one utterance). ``segments`` replaces the plan's
        (alike neighbours merged); frames stay those of the plan's pieces."""
        if segments is None:
            segments = _segments_of(plan, pieces)
        frame_pieces = pieces[:1] if plan.whole else pieces
        if plan.whole:
            utterance = pieces[0].mean.astype(np.float32)
        else:
            weights = np.array([p.piece.speech for p in segments], dtype=np.float64)
            weights /= weights.sum()
            utterance = (weights @ np.stack([p.mean for p in segments])).astype(np.float32)
        info = audio.info
        result = Result(
            source=info.source,
            model=self.model_name,
            granularity=granularity,
            compute_type=self.compute_type,
            backend=self.backend,
            compute_type_reason=self.compute_type_reason,
            adapter=self.adapter_description,
            duration_s=audio.duration_s,
            embedding_dim=self.embed_dim,
            audio=AudioSummary(info.format, info.sample_rate, info.channels, info.duration_s),
            warnings=list(audio.warnings),
        )
        if not plan.speech_found:
            result.warnings.append(f"no speech detected in {audio.duration_s:.1f} s" + (
                "" if plan.whole else ": scored in equal parts of the whole recording"))
        frames = np.concatenate([p.frames for p in frame_pieces]) if granularity == "frame" else None
        if extract_embedding:
            result.embedding = frames if frames is not None else utterance
        if not self.has_head:
            return result
        labels = self.labels
        if segments:
            segment_probs = self._probabilities(np.stack([p.mean for p in segments]))
        if segments and plan.reports_segments(len(segments)):
            result.segments = [
                Segment(start_s=p.piece.speech_start / SAMPLE_RATE, end_s=p.piece.speech_end / SAMPLE_RATE,
                        speech_s=p.piece.speech / SAMPLE_RATE, **_top_class(labels, row))
                for p, row in zip(segments, segment_probs)
            ]
        if plan.whole:
            probs = self._probabilities(utterance[None])[0]
        else:
            probs = weights @ segment_probs
        top = _top_class(labels, probs)
        result.emotion, result.emotion_zh, result.emoji = top["emotion"], top["emotion_zh"], top["emoji"]
        result.confidence, result.scores = top["confidence"], top["scores"]
        if frames is not None:
            result.frames = self._frame_scores(frame_pieces, frames, plan)
        return result

    def _frame_scores(self, pieces: list[_Encoded], frames: np.ndarray, plan: Plan) -> list[FrameScores]:
        """Every frame's class scores; a frame outside the utterances is no speech (no emotion)."""
        hop_s = self.model.hop_samples / SAMPLE_RATE
        span_s = self.model.frame_span_samples / SAMPLE_RATE
        probs = self._probabilities(frames)
        names = [label.english for label in self.labels]
        starts = np.concatenate([p.piece.start / SAMPLE_RATE + np.arange(p.num_frames) * hop_s for p in pieces])
        centres = starts + span_s / 2
        speech = np.zeros(len(starts), dtype=bool)
        for region in plan.regions:
            speech |= (centres >= region.start / SAMPLE_RATE) & (centres < region.end / SAMPLE_RATE)
        best = probs.argmax(axis=1)
        return [
            FrameScores(start_s=float(s), end_s=float(s + span_s), emotion=names[b] if is_speech else None,
                        confidence=float(p[b]) if is_speech else None, scores=[float(v) for v in p],
                        speech=bool(is_speech))
            for s, b, p, is_speech in zip(starts, best, probs, speech)
        ]


def _segments_of(plan: Plan, pieces: list[_Encoded]) -> list[_Encoded]:
    """The encoded segments among an input's encoded pieces (in the order of ``plan.pieces()``)."""
    return pieces[1:] if plan.whole else [p for p in pieces if p.piece.speech > 0]


def _merged_pieces(groups: list[list[Scored]] | None) -> list[Piece]:
    """The pieces to score again: one per group of more than one segment."""
    return [merged_piece(group) for group in groups or [] if len(group) > 1]


def _merged_segments(groups: list[list[Scored]] | None, rescored: Iterator[_Encoded]) -> list[_Encoded] | None:
    """The segments after merging (None: as planned): a group of one as it was, a longer one as
    scored again (``rescored``, in the order of :func:`_merged_pieces`)."""
    if groups is None:
        return None
    return [group[0].payload if len(group) == 1 else next(rescored) for group in groups]  # type: ignore[misc]


def _top_class(labels: list[Label], probs: np.ndarray) -> dict:
    """The winning class's names and confidence, and every class score, of one probability row."""
    best = int(np.argmax(probs))
    return {"emotion": labels[best].english, "emotion_zh": labels[best].chinese, "emoji": labels[best].emoji,
            "confidence": float(probs[best]), "scores": {label.english: float(p) for label, p in zip(labels, probs)}}


def _check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} was asked for but CUDA is not available on this machine")
    return resolved

