"""Architecture hyper-parameters of an emotion2vec checkpoint, read from its ``config.yaml``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import CheckpointError


#: Bounds of a ``config.yaml`` (the released ones are a few KB with a few hundred values).
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_CONFIG_VALUES = 100_000


class _ConfigTooLarge(yaml.YAMLError):
    pass


def _expanded_values(root: yaml.Node) -> int:
    """How many values the document holds once every alias is expanded (a node reached through n
    aliases counts n times), computed on the composed graph without expanding it. Stops counting
    past :data:`MAX_CONFIG_VALUES`; an alias inside its own anchor counts as unbounded."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if children_done:
            on_path.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_CONFIG_VALUES + 1)
            continue
        if key in on_path:
            return MAX_CONFIG_VALUES + 1  # an alias refers to a node that contains it
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                return MAX_CONFIG_VALUES + 1
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-05`` as a float, as OmegaConf (FunASR's loader) does, and
    refuses a document whose aliases expand it past :data:`MAX_CONFIG_VALUES` values (the "billion
    laughs" file: nine lines that name 10⁹ values) before anything is built from it."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and _expanded_values(node) > MAX_CONFIG_VALUES:
            raise _ConfigTooLarge(f"its aliases (*name) expand it to more than {MAX_CONFIG_VALUES:,} values "
                                  "(or an alias refers to itself); a model configuration has a few hundred")
        return node


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


#: Bounds of ``feature_encoder_spec`` checked while it is read (the released files: 7 layers, 60 characters).
MAX_CONV_LAYERS = 32
MAX_CONV_SPEC_CHARS = 2000
_SPEC_FIELD = "model_conf.modalities.audio.feature_encoder_spec"
_SPEC_TOKEN = re.compile(r"\s*(?:(\d+)|([\[\]()+*,]))")


def parse_conv_spec(spec: Any, source: str = "config") -> list[tuple[int, int, int]]:
    """Read a fairseq ``feature_encoder_spec`` such as ``'[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2'``.

    FunASR calls ``eval`` on this string. Here it is read with a small grammar, the forms
    FunASR/fairseq configs use: a sum of terms, each a list of ``(channels, kernel, stride)``
    integer triples, optionally repeated (``LIST * N`` or ``N * LIST``). The layer count is
    bounded (:data:`MAX_CONV_LAYERS`) before any list is built, so ``[(512,10,5)] * 200000000``
    is refused at once, as is anything else (no names, calls or nesting beyond the grammar).

    Raises:
        CheckpointError: naming ``source`` (the config file) and the field.
    """
    shown = repr(spec) if len(repr(spec)) <= 80 else repr(spec)[:77] + "..."

    def refuse(reason: str) -> CheckpointError:
        return CheckpointError(f"{source}: {_SPEC_FIELD} {shown} is not valid: {reason}")

    if not isinstance(spec, str):
        raise refuse("not a string like '[(512, 10, 5)] + [(512, 3, 2)] * 4'")
    if len(spec) > MAX_CONV_SPEC_CHARS:
        raise refuse(f"longer than {MAX_CONV_SPEC_CHARS} characters")
    tokens: list[str | int] = []
    position = 0
    while position < len(spec):
        match = _SPEC_TOKEN.match(spec, position)
        if match is None:
            rest = spec[position:].lstrip()
            if not rest:
                break
            raise refuse(f"unexpected {rest[:10]!r} at character {len(spec) - len(rest)} (only lists of "
                         "(channels, kernel, stride) integers joined by + and repeated by * are read)")
        if match.group(1) and len(match.group(1)) > 9:
            raise refuse(f"the number {match.group(1)[:12]}... is far too large")
        tokens.append(int(match.group(1)) if match.group(1) else match.group(2))
        position = match.end()
    tokens.append("")  # end marker
    index = 0

    def take(expected: str | None = None) -> str | int:
        nonlocal index
        token = tokens[index]
        if expected is not None and token != expected:
            raise refuse(f"expected {expected!r}, found {token!r}" if token != "" else f"expected {expected!r} at the end")
        index += 1
        return token

    def count() -> int:
        token = take()
        if not isinstance(token, int):
            raise refuse(f"expected a repeat count, found {token!r}")
        return token

    def layer_list() -> list[tuple[int, int, int]]:
        take("[")
        layers = []
        while True:
            take("(")
            values = []
            for position_in_layer in range(3):
                value = take()
                if not isinstance(value, int):
                    raise refuse(f"a layer is (channels, kernel, stride) integers; found {value!r}")
                values.append(value)
                if position_in_layer < 2:
                    take(",")
            if tokens[index] == ",":
                take(",")
            take(")")
            layers.append((values[0], values[1], values[2]))
            if len(layers) > MAX_CONV_LAYERS:
                raise refuse(f"more than {MAX_CONV_LAYERS} conv layers")
            if tokens[index] == ",":
                take(",")
            if tokens[index] == "]":
                take("]")
                return layers

    result: list[tuple[int, int, int]] = []
    while True:
        repeat = 1
        if isinstance(tokens[index], int):
            repeat = count()
            take("*")
        layers = layer_list()
        if tokens[index] == "*":
            take("*")
            repeat *= count()
        if len(result) + len(layers) * repeat > MAX_CONV_LAYERS:  # checked before the list is built
            raise refuse(f"more than {MAX_CONV_LAYERS} conv layers")
        result += layers * repeat
        if tokens[index] == "":
            break
        take("+")
    if not result:
        raise refuse("no layers")
    return result


@dataclass(frozen=True)
class Emotion2vecConfig:
    """The subset of FunASR's ``model_conf`` that inference depends on."""

    embed_dim: int = 768
    num_heads: int = 12
    depth: int = 8
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    norm_affine: bool = True
    layer_norm_first: bool = False
    normalize: bool = True
    # modalities.audio
    prenet_depth: int = 4
    num_extra_tokens: int = 10
    extractor_mode: str = "layer_norm"
    conv_layers: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    conv_pos_width: int = 95
    conv_pos_groups: int = 16
    conv_pos_depth: int = 5
    conv_pos_pre_ln: bool = False
    use_alibi_encoder: bool = True
    alibi_scale: float = 1.0
    num_alibi_heads: int = 12
    learned_alibi: bool = False
    learned_alibi_scale_per_head: bool = True
    learned_alibi_scale_per_layer: bool = False
    model_depth: int = 8

    @property
    def conv_pos_kernel(self) -> int:
        """Kernel size of each positional conv layer (FunASR: ``max(3, width // depth)``)."""
        return max(3, self.conv_pos_width // self.conv_pos_depth)

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame of the conv feature extractor (400 = 25 ms)."""
        field = 1
        for _, kernel, stride in reversed(self.conv_layers):
            field = (field - 1) * stride + kernel
        return field

    @property
    def hop(self) -> int:
        """Samples between consecutive frames (320 = 20 ms, i.e. 50 frames per second)."""
        hop = 1
        for _, _, stride in self.conv_layers:
            hop *= stride
        return hop

    def num_frames(self, num_samples: int) -> int:
        """Frames the conv stack produces for ``num_samples`` (0 if too short)."""
        length = num_samples
        for _, kernel, stride in self.conv_layers:
            length = (length - kernel) // stride + 1
            if length <= 0:
                return 0
        return length

    @classmethod
    def from_model_conf(cls, model_conf: dict[str, Any], source: str = "config") -> "Emotion2vecConfig":
        """Build from FunASR's ``model_conf`` mapping (with its ``modalities.audio`` section)."""
        try:
            audio = model_conf.get("modalities", {}).get("audio", {}) or {}
            defaults = cls()

            def top(key: str, cast: type) -> Any:
                value = model_conf.get(key)
                return getattr(defaults, key) if value is None else cast(value)

            def aud(key: str, cast: type, default_attr: str | None = None) -> Any:
                value = audio.get(key)
                return getattr(defaults, default_attr or key) if value is None else cast(value)

            spec = audio.get("feature_encoder_spec")
            conv_layers = tuple(parse_conv_spec(spec, source)) if spec else defaults.conv_layers
            num_heads = top("num_heads", int)
            config = cls(
                embed_dim=top("embed_dim", int),
                num_heads=num_heads,
                depth=top("depth", int),
                mlp_ratio=top("mlp_ratio", float),
                norm_eps=top("norm_eps", float),
                norm_affine=top("norm_affine", bool),
                layer_norm_first=top("layer_norm_first", bool),
                normalize=top("normalize", bool),
                prenet_depth=aud("prenet_depth", int),
                num_extra_tokens=aud("num_extra_tokens", int),
                extractor_mode=str(audio.get("extractor_mode") or model_conf.get("extractor_mode") or "layer_norm"),
                conv_layers=conv_layers,
                conv_pos_width=aud("conv_pos_width", int),
                conv_pos_groups=aud("conv_pos_groups", int),
                conv_pos_depth=aud("conv_pos_depth", int),
                conv_pos_pre_ln=aud("conv_pos_pre_ln", bool),
                use_alibi_encoder=aud("use_alibi_encoder", bool),
                alibi_scale=aud("alibi_scale", float),
                num_alibi_heads=int(audio.get("num_alibi_heads") or num_heads),
                learned_alibi=aud("learned_alibi", bool),
                learned_alibi_scale_per_head=aud("learned_alibi_scale_per_head", bool),
                learned_alibi_scale_per_layer=aud("learned_alibi_scale_per_layer", bool),
                model_depth=aud("model_depth", int),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{source}: model_conf is not a valid emotion2vec configuration: {exc}") from exc
        config.validate(source)
        return config

    def _out_of_bounds(self) -> list[str]:
        """Sizes checked before a model is built: a damaged or hostile config.yaml must not make
        the loader allocate or loop without end (``depth: 100000``). The limits are far above any
        released model (plus_large: 1024-d, 16 heads, 4 + 8 blocks)."""
        values: list[tuple[str, float, float]] = [
            ("embed_dim", self.embed_dim, 8192), ("num_heads", self.num_heads, 256), ("depth", self.depth, 128),
            ("prenet_depth", self.prenet_depth, 128), ("model_depth", self.model_depth, 128),
            ("mlp_ratio", self.mlp_ratio, 16), ("num_alibi_heads", self.num_alibi_heads, 256),
            ("conv_pos_width", self.conv_pos_width, 1024), ("conv_pos_groups", self.conv_pos_groups, 8192),
            ("conv_pos_depth", self.conv_pos_depth, 64), ("conv layers", len(self.conv_layers), 32),
            ("num_extra_tokens", self.num_extra_tokens, 1024),
        ]
        for index, (channels, kernel, stride) in enumerate(self.conv_layers):
            values += [(f"conv layer {index} channels", channels, 8192), (f"conv layer {index} kernel", kernel, 1024),
                       (f"conv layer {index} stride", stride, 1024)]
        minimum = {"prenet_depth": 0, "depth": 0, "model_depth": 0, "conv_pos_depth": 0, "num_extra_tokens": 0}
        return [f"{name} {value} is outside {minimum.get(name, 1)}..{limit}"
                for name, value, limit in values if not minimum.get(name, 1) <= value <= limit]

    def validate(self, source: str = "config") -> None:
        """Reject configurations this implementation does not run exactly like FunASR, and sizes
        beyond any real model (checked first: nothing is built from them)."""
        problems = self._out_of_bounds()
        if problems:
            raise CheckpointError(f"{source}: " + "; ".join(problems))
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % self.conv_pos_groups:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by conv_pos_groups {self.conv_pos_groups}")
        if self.extractor_mode not in ("default", "layer_norm"):
            problems.append(f"extractor_mode {self.extractor_mode!r} is neither 'default' nor 'layer_norm'")
        if self.learned_alibi:
            problems.append("learned_alibi=true is not supported (no released emotion2vec checkpoint uses it)")
        if self.num_alibi_heads > self.num_heads:
            problems.append(f"num_alibi_heads {self.num_alibi_heads} exceeds num_heads {self.num_heads}")
        if problems:
            raise CheckpointError(f"{source}: " + "; ".join(problems))


#: FunASR's default file names in a model directory; ``configuration.json`` may name others.
CONFIG_FILE, WEIGHTS_FILE, TOKENS_FILE, FILE_MAP = "config.yaml", "model.pt", "tokens.txt", "configuration.json"


@dataclass(frozen=True)
class CheckpointFiles:
    """The files of a FunASR model directory: architecture, weights, and (for a head) labels."""

    config: Path
    weights: Path
    tokens: Path | None
    """``None`` when the directory has no label list (embedding-only models such as emotion2vec_base)."""


def checkpoint_files(directory: str | Path) -> CheckpointFiles:
    """Where a model directory keeps its files, as FunASR finds them.

    ``configuration.json``'s ``file_path_metas`` names them when present (emotion2vec_base's
    weights are ``emotion2vec_base.pt``, the plus models' ``model.pt``); otherwise, and for any
    entry it does not name, ``config.yaml``, ``model.pt`` and ``tokens.txt``. Names must stay
    inside the directory. Files are not checked for existence, except that a missing label
    list gives ``tokens=None``.
    """
    directory = Path(directory)
    metas: dict[str, Any] = {}
    file_map = directory / FILE_MAP
    if file_map.is_file():
        try:
            data = json.loads(file_map.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{file_map}: cannot read the model's file list: {exc}") from exc
        if isinstance(data, dict) and isinstance(data.get("file_path_metas"), dict):
            metas = data["file_path_metas"]

    def inside(value: Any, default: str) -> Path:
        if value is None:
            return directory / default
        relative = Path(str(value))
        if not isinstance(value, str) or relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise CheckpointError(f"{file_map}: file name {value!r} does not name a file inside {directory}")
        return directory / relative

    tokenizer = metas.get("tokenizer_conf")
    tokens = inside(tokenizer.get("token_list") if isinstance(tokenizer, dict) else None, TOKENS_FILE)
    return CheckpointFiles(config=inside(metas.get("config"), CONFIG_FILE),
                           weights=inside(metas.get("init_param"), WEIGHTS_FILE),
                           tokens=tokens if tokens.is_file() else None)


@dataclass(frozen=True)
class ConfigFile:
    """What inference takes from a FunASR ``config.yaml``: the model class name, its ``model_conf``
    and the checkpoint renaming rules (``scope_map``). Other sections (``tokenizer``,
    ``tokenizer_conf``, ``frontend_conf``, the image and text modalities) are ignored."""

    model: str
    model_conf: dict[str, Any]
    scope_map: tuple[tuple[str, str], ...]


def parse_scope_map(value: Any, source: str = "config") -> tuple[tuple[str, str], ...]:
    """FunASR's ``scope_map``: a flat list (or comma-separated string) of (checkpoint prefix,
    model prefix) pairs, ``none`` (any case) or null meaning the empty prefix.

    The released emotion2vec+ files say ``scope_map: ['d2v_model.', none]``: checkpoint names
    ``d2v_model.X`` load into model parameter ``X``.
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or len(items) % 2:
        raise CheckpointError(f"{source}: scope_map must be a list of (checkpoint prefix, model prefix) pairs; got {value!r}")
    prefixes = []
    for item in items:
        if item is not None and not isinstance(item, str):
            raise CheckpointError(f"{source}: scope_map entry {item!r} is not a string")
        prefixes.append("" if item is None or item.strip().lower() == "none" else item.strip())
    return tuple(zip(prefixes[0::2], prefixes[1::2]))


def read_config_file(path: str | Path) -> ConfigFile:
    """Read a FunASR ``config.yaml`` (without running anything in it)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise _ConfigTooLarge(f"the file is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MB; "
                                  "a model configuration is a few KB")
        data = yaml.load(raw.decode("utf-8"), Loader=_ConfigLoader)
    except RecursionError:
        raise CheckpointError(f"{path}: cannot read the model configuration: its values are nested too "
                              "deeply") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{path}: cannot read the model configuration: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model_conf"), dict):
        raise CheckpointError(f"{path}: no 'model_conf' section; this is not a FunASR model configuration")
    return ConfigFile(model=str(data.get("model", "")), model_conf=data["model_conf"],
                      scope_map=parse_scope_map(data.get("scope_map"), str(path)))


def load_config(path: str | Path) -> Emotion2vecConfig:
    """Load and validate the emotion2vec architecture described by ``config.yaml``."""
    return architecture_of(read_config_file(path), str(path))


def architecture_of(config_file: ConfigFile, source: str) -> Emotion2vecConfig:
    """The validated emotion2vec architecture of a read ``config.yaml``."""
    if config_file.model and config_file.model != "Emotion2vec":
        raise CheckpointError(f"{source}: model is {config_file.model!r}, expected 'Emotion2vec'")
    return Emotion2vecConfig.from_model_conf(config_file.model_conf, source=source)
