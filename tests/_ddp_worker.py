"""Run by tests/test_ddp.py, alone or under torchrun: a few float64 training steps with the Trainer.

float64 because a from-scratch ResNet at initialisation is so sensitive that float32 rounding
differences between one and two processes (summation order) grow to percent-level loss
differences within three steps; in float64 they stay near 1e-12, so equality can be asserted.
"""

import sys

import torch

import fnc
from fnc.engine import Trainer

spec, output = sys.argv[1], sys.argv[2]
center_weight = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0  # test_train_center.py passes one
torch.set_default_dtype(torch.float64)
torch.manual_seed(0)
model = fnc.create_model("baseline_resnet50", num_classes=12)
trainer = Trainer(
    model,
    spec,
    output,
    epochs=1,
    batch_size=8,
    num_instances=2,
    input_size=(32, 32),
    lr=1e-3,
    warmup_epochs=0,
    flip_p=0.0,
    padding=0,
    erase_p=0.0,
    num_workers=0,
    progress=False,
    sync_bn=True,
    device="cpu",
    eval_every=0,
    center_weight=center_weight,
)
trainer.eval_data = None  # only the training is compared
trainer.fit()
