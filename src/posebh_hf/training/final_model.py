"""The outputs of a finished run (layer 4): the final model folder (weights, config, image processor, card, through
the one model-folder writer) and, in transfer mode, the new skeleton's prototype pack.

Functions of a `Trainer` (the loop stays in `trainer.py`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["export_pack", "save_final", "write_model_repo"]


def save_final(trainer: Trainer) -> tuple[Path | None, Path | None]:
    """`save_pretrained` + model card into ``<output_dir>/final`` (atomically); transfer: the prototype pack.

    The full state dict is gathered on every process first (a no-op copy under DDP, an all-gather of the
    shards under FSDP), then the main process writes the folder.
    """
    final = trainer.output_dir / "final"
    pack_dir = trainer.output_dir / "prototype_pack"
    pack_path = None
    trainer.sync_buffers()
    state_dict = trainer.acc.get_state_dict(trainer.model)
    if trainer.is_main:
        write_model_repo(trainer, final, state_dict)
        if trainer.cfg.mode == "transfer" and trainer.cfg.transfer.export_pack:
            pack_path = export_pack(trainer, pack_dir)
    trainer.acc.wait_for_everyone()
    return final, pack_path


def write_model_repo(trainer: Trainer, folder: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """config.json + model.safetensors + preprocessor_config.json + README.md (card with the last val numbers),
    whole or not at all (`modeling.save_model_folder`; an earlier `final/` is replaced once the new one is
    complete)."""
    from ..hub.cards import ResultRow, render_model_card
    from ..modeling import save_model_folder
    from ..processing_posebh import PoseBHImageProcessor

    # the crop size the model was trained at, so `PoseBHPipeline.from_pretrained` / `posebh predict` match it
    aug = trainer.data.transforms[0].spec.augment  # (W, H) sizes; every dataset shares them
    processor = PoseBHImageProcessor(
        size={"height": int(aug.input_size[1]), "width": int(aug.input_size[0])},
        heatmap_size={"height": int(aug.heatmap_size[1]), "width": int(aug.heatmap_size[0])},
        decoding=dict(getattr(trainer.unwrapped.config, "decoding", None) or {}),
        default_decoding="udp" if aug.use_udp else "default")
    measured = []
    if trainer.evaluations:
        split = "val (GT-box crops, flip test)" if trainer.cfg.eval.flip_test else "val (GT-box crops)"
        measured = [ResultRow(key.split("/")[1], split, key.split("/")[2], f"{value:.4f}")
                    for key, value in trainer.evaluations[-1].items() if key.count("/") == 2]
    card = render_model_card(trainer.unwrapped.config, repo_id=trainer.cfg.repo_id, measured_results=measured,
                             measured_source=f"posebh_hf scripts/train.py, step {trainer.state.step}",
                             provenance=f"Trained with posebh_hf ({trainer.cfg.mode} mode), "
                                        f"{trainer.init_description}.")
    save_model_folder(trainer.unwrapped, folder, overwrite=True, state_dict=state_dict, image_processor=processor,
                      card=card)


def export_pack(trainer: Trainer, folder: Path) -> Path:
    from ..hub.attach import export_prototype_pack

    name = trainer.cfg.dataset_names[0]
    base = trainer.cfg.transfer.pack_base_model or trainer.cfg.model.init
    source_index = 0
    if trainer.cfg.model.init is not None:
        base_config = type(trainer.unwrapped.config).from_pretrained(trainer.cfg.model.init,
                                                                 revision=trainer.cfg.model.revision)
        if trainer.cfg.transfer.source_dataset in base_config.dataset_names:
            source_index = base_config.dataset_names.index(trainer.cfg.transfer.source_dataset)
    init = trainer.cfg.transfer.prototype_init
    how = {"random": "learned by momentum updates from a random init",
           "class_mean": "started at the class means, then learned by momentum updates",
           "fit": "fitted by gradient to the training frames (then kept)"}[init]
    pack = export_prototype_pack(trainer.unwrapped, name, base_model=base, learned={
        "method": "posebh-transfer",
        "description": f"new-skeleton prototypes {how}, with the base model's embedding head frozen (spec §8)",
        "prototype_init": init,
        "routing_dataset": trainer.cfg.transfer.source_dataset,
        "steps": trainer.state.step})
    pack = replace(pack, dataset_index=source_index)
    pack.save(folder)
    trainer._print(f"prototype pack for {name!r} written to {folder}")
    return folder
