"""Architecture hyper-parameters of an emotion2vec checkpoint, read from its ``config.yaml``."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import CheckpointError


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-05`` as a float, as OmegaConf (FunASR's loader) does."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_conv_spec(spec: str) -> list[tuple[int, int, int]]:
    """Evaluate a fairseq ``feature_encoder_spec`` such as ``'[(512, 10, 5)] + [(512, 3, 2)] * 4'``.

    FunASR calls ``eval`` on this string; we accept only list/tuple literals of integers
    combined with ``+`` and ``*``, so a config file cannot run code.
    """

    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [evaluate(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = evaluate(node.left), evaluate(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"unsupported expression {ast.dump(node)}")

    try:
        layers = evaluate(ast.parse(spec, mode="eval"))
        if not isinstance(layers, list) or not layers:
            raise ValueError("not a non-empty list")
        result = []
        for layer in layers:
            if not (isinstance(layer, tuple) and len(layer) == 3 and all(isinstance(v, int) for v in layer)):
                raise ValueError(f"layer {layer!r} is not (channels, kernel, stride)")
            result.append(layer)
        return result
    except (SyntaxError, ValueError, TypeError) as exc:
        raise CheckpointError(f"feature_encoder_spec {spec!r} is not valid: {exc}") from exc


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
            conv_layers = tuple(parse_conv_spec(spec)) if spec else defaults.conv_layers
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

    def validate(self, source: str = "config") -> None:
        """Reject configurations this implementation does not run exactly like FunASR."""
        problems = []
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.extractor_mode not in ("default", "layer_norm"):
            problems.append(f"extractor_mode {self.extractor_mode!r} is neither 'default' nor 'layer_norm'")
        if self.learned_alibi:
            problems.append("learned_alibi=true is not supported (no released emotion2vec checkpoint uses it)")
        if self.num_alibi_heads > self.num_heads:
            problems.append(f"num_alibi_heads {self.num_alibi_heads} exceeds num_heads {self.num_heads}")
        if problems:
            raise CheckpointError(f"{source}: " + "; ".join(problems))


def read_config_file(path: str | Path) -> tuple[str, dict[str, Any]]:
    """Read a FunASR ``config.yaml``; returns ``(model class name, model_conf)``."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ConfigLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{path}: cannot read the model configuration: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model_conf"), dict):
        raise CheckpointError(f"{path}: no 'model_conf' section; this is not a FunASR model configuration")
    return str(data.get("model", "")), data["model_conf"]


def load_config(path: str | Path) -> Emotion2vecConfig:
    """Load and validate the emotion2vec architecture described by ``config.yaml``."""
    model_name, model_conf = read_config_file(path)
    if model_name and model_name != "Emotion2vec":
        raise CheckpointError(f"{path}: model is {model_name!r}, expected 'Emotion2vec'")
    return Emotion2vecConfig.from_model_conf(model_conf, source=str(path))
