"""Defaults and choices shared by the library and its interfaces, in one light module (no NumPy, no
PyTorch), so the command line builds its parser and prints ``--help`` without importing a model.
"""

from __future__ import annotations

from pathlib import Path

from .models.registry import COMPACT_NAME

#: The model used when none is named: the one bundled with the package (works offline).
DEFAULT_MODEL = COMPACT_NAME
#: Longest input the library and the command line accept by default.
MAX_DURATION_S: float = 4 * 3600.0
#: Longest input the REST service and the WebUI accept by default: one request should not hold the
#: process's single model thread, and every other user's request behind it, for many minutes.
SERVER_MAX_DURATION_S: float = 600.0
GRANULARITIES: tuple[str, ...] = ("utterance", "frame")
COMPUTE_TYPES: tuple[str, ...] = ("float32", "int8", "bfloat16")
#: ``auto`` picks one of :data:`COMPUTE_TYPES` by CPU (see :func:`emotion2vec_plus.runtime.compute.choose_compute_type`).
COMPUTE_TYPE_CHOICES: tuple[str, ...] = ("auto", *COMPUTE_TYPES)
BACKENDS: tuple[str, ...] = ("torch", "onnx")
#: Environment variable that sets the compute type when none is given (e.g. ``float32`` for FunASR's
#: numbers exactly); without it the default is ``auto``.
COMPUTE_TYPE_ENV = "EMOTION2VEC_COMPUTE_TYPE"
#: File extensions (lower-case) taken as audio when a folder is searched (batch, train-head) or a
#: file is picked in the WebUI; any file can still be passed by name.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".webm", ".aac", ".aiff", ".aif")
#: Where a batch job writes embeddings.
EMBEDDING_MODES: tuple[str, ...] = ("parquet", "npy", "both", "none")
#: Custom head kinds (:class:`emotion2vec_plus.heads.EmotionHead`).
HEAD_KINDS: tuple[str, ...] = ("logreg", "mlp")
#: Embedding cache of ``train-head``.
EMBEDDING_CACHE = Path("~/.cache/emotion2vec_plus/embeddings")
ONNX_OPSET = 17
API_KEY_ENV = "EMOTION2VEC_API_KEY"
SERVE_PORT = 8000
SERVE_MAX_UPLOAD_MB = 25.0
WEBUI_PORT = 7860
WEBUI_MAX_UPLOAD_MB = 50.0
#: Live sessions (the REST service's /v1/stream, the WebUI's Live tab): how many at once, and the
#: most audio one may take.
LIVE_SESSIONS = 8
LIVE_MAX_MINUTES = 60.0
