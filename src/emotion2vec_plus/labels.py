"""Emotion labels: the 9 emotion2vec+ classes, their Chinese names and emoji, and ``tokens.txt``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

#: The emotion2vec+ classes in model output order.
EMOTIONS: tuple[str, ...] = (
    "angry",
    "disgusted",
    "fearful",
    "happy",
    "neutral",
    "other",
    "sad",
    "surprised",
    "unknown",
)

EMOTIONS_ZH: dict[str, str] = {
    "angry": "生气",
    "disgusted": "厌恶",
    "fearful": "恐惧",
    "happy": "开心",
    "neutral": "中立",
    "other": "其他",
    "sad": "难过",
    "surprised": "吃惊",
    "unknown": "未知",
}

EMOJI: dict[str, str] = {
    "angry": "😠",
    "disgusted": "🤢",
    "fearful": "😨",
    "happy": "😊",
    "neutral": "😐",
    "other": "🤔",
    "sad": "😢",
    "surprised": "😲",
    "unknown": "❓",
}

#: FunASR drops classifier outputs whose token starts with this prefix.
UNUSED_PREFIX = "unuse"


@dataclass(frozen=True)
class Label:
    """One classifier output: the raw token from ``tokens.txt`` and its readable names."""

    token: str
    english: str
    chinese: str
    emoji: str

    @property
    def unused(self) -> bool:
        """True for placeholder outputs that FunASR masks out (``unuse...`` tokens)."""
        return self.token.startswith(UNUSED_PREFIX)


def label_from_token(token: str) -> Label:
    """Parse a ``tokens.txt`` entry such as ``生气/angry`` or ``<unk>``."""
    token = token.strip()
    if token == "<unk>":
        english, chinese = "unknown", EMOTIONS_ZH["unknown"]
    elif "/" in token:
        chinese, english = token.split("/", 1)
    else:
        english = token
        chinese = EMOTIONS_ZH.get(token, token)
    return Label(token=token, english=english, chinese=chinese, emoji=EMOJI.get(english, ""))


def label_from_name(name: str) -> Label:
    """A label of a custom head (any name, e.g. ``hesitant``); emotion2vec+ names get their Chinese and emoji."""
    return Label(token=name, english=name, chinese=EMOTIONS_ZH.get(name, name), emoji=EMOJI.get(name, ""))


def default_labels() -> list[Label]:
    """The 9 emotion2vec+ labels, for checkpoints that ship no ``tokens.txt``."""
    token = {name: f"{EMOTIONS_ZH[name]}/{name}" for name in EMOTIONS}
    token["unknown"] = "<unk>"
    return [label_from_token(token[name]) for name in EMOTIONS]


def read_tokens(path: str | Path) -> list[Label]:
    """Read ``tokens.txt`` (one label per line, in classifier output order)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the label list: {exc}") from exc
    labels = [label_from_token(line) for line in lines if line.strip()]
    if not labels:
        raise CheckpointError(f"{path}: the label list is empty")
    return labels
