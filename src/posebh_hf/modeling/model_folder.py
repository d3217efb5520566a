"""Reading and writing a model folder (layer 2): one writer, and one clear error per problem when reading.

Writing: `save_model_folder` is the one writer of a model folder (weights, config, image processor, card, extra
files): conversion, training, `pack attach` and the Hub repo writer call it. It writes through
`atomic_files.write_folder_atomically`, so a full disk or a killed write leaves the target as it was, a non-empty
target needs `overwrite`, and folders get ordinary permissions (not mkdtemp's 0700 or safetensors' 0600).

Reading:
`from_pretrained` reports a broken folder from deep inside transformers or safetensors ("'list' object has no
attribute 'get'", "header too large", "Invalid magic number", "look at the above report"). Every entry point that
loads a local folder (`posebh predict`, `pack`, `viz`, `hub`, `export`, the pipeline, the demo) checks it here first,
so each problem is one `ModelFolderError` naming the file and what is wrong with it:

- `config.json`: missing, unreadable, not UTF-8, not JSON, not a JSON object, not `model_type: "posebh"`, or a
  field `PoseBHConfig` rejects;
- weights: `model.safetensors` missing (a pickle-only `pytorch_model.bin` is refused: it is never unpickled),
  unreadable, not a safetensors file, or holding tensors whose names or shapes do not match `config.json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..atomic_files import write_folder_atomically, write_text_atomically
from ..configuration_posebh import PoseBHConfig

__all__ = ["ModelFolderError", "check_model_folder", "load_model_folder", "save_model_folder"]

WEIGHTS = "model.safetensors"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


class ModelFolderError(ValueError):
    """A model folder that cannot be loaded; the message names the file and the problem."""


def _read_config(folder: Path) -> dict[str, Any]:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelFolderError(f"model folder {folder} has no config.json; it is not a saved PoseBH model")
    try:
        raw = config_file.read_bytes()
    except OSError as err:
        raise ModelFolderError(f"cannot read {config_file}: {err.strerror or err}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelFolderError(f"{config_file} is not a text JSON file (not UTF-8)") from None
    except json.JSONDecodeError as err:
        raise ModelFolderError(f"{config_file} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{config_file} must hold a JSON object, got a {type(data).__name__}")
    _check_scalar_fields(config_file, data)
    model_type = data.get("model_type")
    if model_type != "posebh":
        hint = " (convert it first: posebh convert vitpose --src ... --dst ...)" if model_type == "vitpose" else ""
        raise ModelFolderError(f"model folder {folder} holds a {model_type!r} model, not a PoseBH model{hint}")
    return data


def _check_scalar_fields(config_file: Path, data: dict[str, Any]) -> None:
    """Type-check PoseBHConfig's plain int / float / str fields (a string where an int belongs otherwise fails
    later as "'<' not supported between instances of 'str' and 'int'")."""
    import inspect  # noqa: PLC0415

    for name, param in inspect.signature(PoseBHConfig.__init__).parameters.items():
        if name not in data or param.annotation not in (int, float, str, "int", "float", "str"):
            continue
        value, kind = data[name], str(getattr(param.annotation, "__name__", param.annotation))
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "str": isinstance(value, str)}[kind]
        if not ok:
            expected = {"int": "an integer", "float": "a number", "str": "a string"}[kind]
            raise ModelFolderError(f"{config_file}: field {name!r} must be {expected}, got {value!r}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _build_config(folder: Path) -> PoseBHConfig:
    try:
        return PoseBHConfig.from_pretrained(str(folder))
    except Exception as err:  # noqa: BLE001 - any failure to build the config is a bad config.json
        first = _first_line(err)
        if first.endswith(":") and err.__cause__ is not None:  # huggingface_hub's strict dataclass validation
            first = f"{first} {_first_line(err.__cause__)}"
        raise ModelFolderError(f"{folder / 'config.json'}: invalid PoseBH config: {first}") from None


def _weights_file(folder: Path) -> Path:
    weights = folder / WEIGHTS
    if weights.is_file():
        return weights
    pickles = [name for name in PICKLE_WEIGHTS if (folder / name).is_file()]
    if pickles:
        raise ModelFolderError(
            f"model folder {folder} has only {pickles[0]} (a pickle) and no {WEIGHTS}; posebh_hf never unpickles "
            "weights: convert the checkpoint with `posebh convert` or save it with safetensors")
    raise ModelFolderError(f"model folder {folder} has no {WEIGHTS}")


def _weight_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors header (no tensor data is read)."""
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415

    if not os.access(weights, os.R_OK):
        raise ModelFolderError(f"cannot read {weights}: permission denied")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except SafetensorError as err:
        raise ModelFolderError(f"{weights} is not a readable safetensors file ({err})") from None
    except OSError as err:
        raise ModelFolderError(f"cannot read {weights}: {err.strerror or err}") from None


def _expected_shapes(config: PoseBHConfig) -> dict[str, tuple[int, ...]]:
    """Parameter and persistent-buffer shapes of a model built from `config`, without allocating its weights."""
    import torch  # noqa: PLC0415

    from .modeling_posebh import PoseBHForPoseEstimation  # noqa: PLC0415

    with torch.device("meta"):
        model = PoseBHForPoseEstimation(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _check_weights_match(weights: Path, found: dict[str, tuple[int, ...]], config: PoseBHConfig) -> None:
    expected = _expected_shapes(config)
    wrong = [(n, found[n], s) for n, s in expected.items() if n in found and found[n] != s]
    if wrong:
        name, got, want = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise ModelFolderError(f"{weights}: tensor {name} has shape {list(got)} but config.json needs {list(want)}"
                               f"{more}; the weights and config.json come from different models")
    missing = [n for n in expected if n not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelFolderError(f"{weights} lacks tensor {missing[0]}{more} that config.json needs; "
                               "the weights and config.json come from different models")


def check_model_folder(folder: str | os.PathLike[str]) -> PoseBHConfig:
    """Check a local model folder without loading its weights; returns its config or raises `ModelFolderError`."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise ModelFolderError(f"model {path} does not exist (Hub ids need the network; pass a local folder offline)")
    if not path.is_dir():
        raise ModelFolderError(f"model {path} is a file, not a model folder (config.json + {WEIGHTS})")
    _read_config(path)
    config = _build_config(path)
    weights = _weights_file(path)
    _check_weights_match(weights, _weight_shapes(weights), config)
    return config


def load_model_folder(folder: str | os.PathLike[str]) -> Any:
    """`PoseBHForPoseEstimation` from a checked local folder, in eval mode."""
    from .modeling_posebh import PoseBHForPoseEstimation  # noqa: PLC0415

    check_model_folder(folder)
    return PoseBHForPoseEstimation.from_pretrained(str(Path(folder).expanduser())).eval()


def save_model_folder(model: Any, target: str | os.PathLike[str], *, overwrite: bool = False,
                      state_dict: Mapping[str, Any] | None = None, image_processor: Any = None,
                      card: str | None = None, extra: Callable[[Path], Any] | None = None) -> Path:
    """Write a complete model folder at `target`, or nothing.

    Args:
        model: a `PoseBHForPoseEstimation` (its `save_pretrained` writes config.json + model.safetensors).
        target: the folder; it must not exist or be empty unless `overwrite`.
        state_dict: weights to save instead of `model.state_dict()` (training gathers them across processes).
        image_processor: anything with `save_pretrained(folder)` (writes preprocessor_config.json).
        card: the model card's text (README.md).
        extra: called with the staging folder last, for anything else the folder holds (remote code, ...).
    """
    def write(folder: Path) -> None:
        model.save_pretrained(folder, **({"state_dict": dict(state_dict)} if state_dict is not None else {}))
        if image_processor is not None:
            image_processor.save_pretrained(folder)
        if card is not None:
            write_text_atomically(folder / "README.md", card)
        if extra is not None:
            extra(folder)

    return write_folder_atomically(target, write, overwrite=overwrite)
