"""Stage schedule (spec §5.2), Q7 (CSS start) and Q10 (backbone thaw after a double freeze), lr schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from posebh_hf.configuration_posebh import PoseBHConfig
from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.training import (
    ConfigError,
    LRSchedule,
    ScheduleConfig,
    StageSchedule,
    apply_stage,
    parse_event,
)


@pytest.fixture(scope="module")
def tiny_model() -> PoseBHForPoseEstimation:
    torch.manual_seed(0)
    return PoseBHForPoseEstimation(PoseBHConfig.tiny(dataset_names=["coco", "ap10k"], num_hidden_layers=1))


def _trainable(model: nn.Module, prefix: str) -> set[bool]:
    return {p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix)}


def test_paper_stages_for_100_epochs() -> None:
    s = StageSchedule.from_config(ScheduleConfig(epochs=100))
    stage1, last1 = s.flags(0), s.flags(49)
    assert stage1 == last1.__class__(**{**last1.__dict__, "epoch": 0})
    assert (stage1.train_backbone, stage1.train_heads, stage1.train_embedding, stage1.update_prototypes) == \
        (False, False, True, True)
    assert not stage1.cps and not stage1.css and stage1.stage == 1
    stage2 = s.flags(50)
    assert (stage2.train_backbone, stage2.train_heads, stage2.train_embedding, stage2.update_prototypes) == \
        (False, True, True, False)
    assert stage2.cps and not stage2.css and stage2.stage == 2
    assert s.flags(89) == stage2.__class__(**{**stage2.__dict__, "epoch": 89})
    stage3 = s.flags(90)
    assert (stage3.train_backbone, stage3.train_heads, stage3.update_prototypes, stage3.css) == (True, True, False,
                                                                                                 True)
    assert s.flags(99).stage == 3


def test_stage_epochs_scale_with_the_number_of_epochs() -> None:
    s = StageSchedule.from_config(ScheduleConfig(epochs=6))
    assert [s.flags(e).stage for e in range(6)] == [1, 1, 1, 2, 2, 3]
    assert [s.flags(e).css for e in range(6)] == [False] * 5 + [True]


def test_q7_css_starts_in_the_last_10_percent_by_default_and_at_50_when_released() -> None:
    paper = StageSchedule.from_config(ScheduleConfig(epochs=100))
    assert paper.css_start == 90 and not paper.flags(89).css and paper.flags(90).css
    released = StageSchedule.from_config(ScheduleConfig(epochs=100, css_start_epoch=50))
    assert released.css_start == 50 and not released.flags(49).css and released.flags(50).css
    never = StageSchedule.from_config(ScheduleConfig(epochs=100, css_start_epoch="never"))
    assert not any(never.flags(e).css for e in range(100))


def _released_backbone_hook(model: nn.Module, events: list[tuple[int, str]], epochs: range) -> dict[int, bool]:
    """The released BackboneFreezeHook logic (spec §5.2 Q10): a 'freeze' records every parameter that is already
    frozen as permanently non-learnable, and 'thaw' skips those."""
    permanent: set[str] = set()
    state = {}
    for epoch in epochs:
        for at, action in events:
            if at != epoch:
                continue
            for name, p in model.named_parameters():
                if not name.startswith("backbone."):
                    continue
                if action == "freeze":
                    if not p.requires_grad:
                        permanent.add(name)
                    p.requires_grad_(False)
                elif name not in permanent:
                    p.requires_grad_(True)
        state[epoch] = all(p.requires_grad for n, p in model.named_parameters() if n.startswith("backbone."))
    return state


def test_q10_backbone_thaws_at_the_configured_epoch_after_being_frozen_twice(tiny_model) -> None:
    events = ["freeze@0", "freeze@50", "thaw@90"]  # the released ViT-B hook configuration
    s = StageSchedule.from_config(ScheduleConfig(epochs=100, events={"backbone": events}))
    assert [s.trainable("backbone", e) for e in (0, 49, 50, 89, 90, 99)] == [False] * 4 + [True] * 2
    # applied epoch by epoch to a real model, exactly as the loop does at each stage change
    for epoch in (0, 50, 90):
        apply_stage(tiny_model, s.flags(epoch))
    assert _trainable(tiny_model, "backbone.") == {True}
    # the released hook never thaws it: this is the behaviour the assertion above rules out
    for p in tiny_model.parameters():
        p.requires_grad_(True)
    released = _released_backbone_hook(tiny_model, [(0, "freeze"), (50, "freeze"), (90, "thaw")], range(100))
    assert released[89] is False and released[99] is False
    for p in tiny_model.parameters():
        p.requires_grad_(True)


def test_configured_thaw_epoch_and_resume_at_any_epoch(tiny_model) -> None:
    s = StageSchedule.from_config(ScheduleConfig(epochs=20, backbone_thaw_epoch=7, heads_thaw_epoch=3))
    # a run resumed in the middle of stage 2 gets the same flags as one that went through every epoch
    apply_stage(tiny_model, s.flags(5))
    assert _trainable(tiny_model, "backbone.") == {False} and _trainable(tiny_model, "heads.") == {True}
    apply_stage(tiny_model, s.flags(7))
    assert _trainable(tiny_model, "backbone.") == {True}
    assert _trainable(tiny_model, "embedding_head.") == {True}
    for p in tiny_model.parameters():
        p.requires_grad_(True)


def test_modes_multihead_and_transfer() -> None:
    multi = StageSchedule.from_config(ScheduleConfig(epochs=10), "multihead")
    f = multi.flags(0)
    assert f.train_backbone and f.train_heads and not f.train_embedding and not f.update_prototypes
    assert not any(multi.flags(e).cps or multi.flags(e).css for e in range(10))
    transfer = StageSchedule.from_config(ScheduleConfig(epochs=60, prototype_freeze_epoch=30,
                                                        backbone_thaw_epoch=30), "transfer")
    assert not transfer.flags(0).train_embedding and transfer.flags(0).train_heads
    assert transfer.flags(29).update_prototypes and not transfer.flags(30).update_prototypes
    assert not transfer.flags(29).train_backbone and transfer.flags(30).train_backbone
    pw3d = StageSchedule.from_config(ScheduleConfig(epochs=30, events={"backbone": ["freeze@0", "thaw@15",
                                                                                    "freeze@16"]}), "transfer")
    assert [pw3d.trainable("backbone", e) for e in (14, 15, 16)] == [False, True, False]


def test_bad_events_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="freeze@EPOCH"):
        parse_event("melt@3")
    with pytest.raises(ConfigError, match="unknown part"):
        StageSchedule.from_config(ScheduleConfig(events={"neck": ["freeze@0"]}))


def test_lr_schedule_warmup_and_step_decay() -> None:
    lr = LRSchedule.from_config(ScheduleConfig(epochs=100, warmup_steps=500, warmup_ratio=0.001), steps_per_epoch=100)
    assert lr.factor(0) == pytest.approx(0.001)
    assert lr.factor(250) == pytest.approx(0.001 + 0.999 * 0.5)  # mmcv linear warm-up
    assert lr.factor(500) == 1.0 and lr.factor(499) < 1.0
    assert lr.factor(50 * 100 - 1) == 1.0 and lr.factor(50 * 100) == pytest.approx(0.1)
    assert lr.factor(90 * 100) == pytest.approx(0.01)
    opt = torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(1))], "base_lr": 1e-3, "lr_scale": 0.5}])
    lr.apply(opt, 9000)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 * 0.01)
    restored = LRSchedule.from_config(ScheduleConfig(epochs=100), steps_per_epoch=100)
    restored.load_state_dict(lr.state_dict())
    assert restored.last_step == 9000


def test_a_schedule_with_an_epoch_where_nothing_learns_is_refused_at_load() -> None:
    """multihead with the heads and backbone thawing late: epoch 0 has nothing to backpropagate. One ConfigError
    naming the epochs and the keys, at load (was an autograd error at the first step); a max_steps that ends the run
    before such epochs is accepted."""
    from posebh_hf.training import load_train_config

    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    late = ["mode=multihead", "schedule.epochs=4", "schedule.steps_per_epoch=2", "schedule.heads_thaw_epoch=1",
            "schedule.backbone_thaw_epoch=2"]
    with pytest.raises(ConfigError, match=r"nothing learns by gradient in epochs 0-0 .*schedule.heads_thaw_epoch"):
        load_train_config(smoke, late)
    never = ["mode=posebh", "schedule.epochs=4", "schedule.steps_per_epoch=2", "schedule.embedding_freeze_epoch=2",
             "schedule.heads_thaw_epoch=never", "schedule.backbone_thaw_epoch=never"]
    with pytest.raises(ConfigError, match="epochs 2-3"):
        load_train_config(smoke, never)
    assert load_train_config(smoke, [*never, "max_steps=4"]).max_steps == 4
