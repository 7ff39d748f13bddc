"""Published weights for the course's models, in the spirit of torchvision's weights enums.

UvA Deep Learning Tutorial 5 (Phillip Lippe; MIT licence) published its four CIFAR-10 models
with their TensorBoard training logs. Each entry says which files they are, their sha256, what
the tutorial's printed table reports for them, and the course's name for the recipe they were
trained with. :func:`helpers.checkpoints.load_tutorial5` downloads, checks and loads them.
"""

from __future__ import annotations

from dataclasses import dataclass

TUTORIAL5_URL = "https://raw.githubusercontent.com/phlippe/saved_models/main/tutorial5/"
TUTORIAL5_STEPS_PER_EPOCH = 351  # 45,000 training images in full batches of 128


@dataclass(frozen=True)
class Weights:
    """A published checkpoint and its training log (paths below the publisher's base URL),
    with their sha256 and what the model reached."""
    checkpoint: str
    checkpoint_sha256: str
    log: str
    log_sha256: str
    test_acc: float   # the tutorial notebook's printed table (best-validation checkpoint)
    recipe: str       # the course's name for the recipe it was trained with


TUTORIAL5 = {  # keyed by the course's model name
    "googlenet": Weights(
        "GoogleNet.ckpt", "5453bd5d90d8547ca9d3639e8f07246c081fb3790382f6ea124642cad9b6b3d5",
        "tensorboards/GoogleNet/events.out.tfevents.googlenet",
        "57db06a18cc42f489203629af30a4b479a59a994780580451837a366add7ee66",
        0.8970, "tutorial5-adamw"),
    "resnet": Weights(
        "ResNet.ckpt", "c16348ee82a12444310bd9953f8cbe50d3654657ca76f6eb54e116714ce52a1a",
        "tensorboards/ResNet/events.out.tfevents.resnet",
        "fa0b724be28b442416fe95edb04ae8fc6b8b3d8b9c41597c7aa1e67723374759",
        0.9106, "tutorial5-sgd"),
    "preact-resnet": Weights(
        "ResNetPreAct.ckpt", "4ab71bf72ec58b72f800f5cec4822f1f25e2c47ca4cdc6eecc328d0681baf376",
        "tensorboards/ResNetPreAct/events.out.tfevents.resnetpreact",
        "e1a04cb13333cd4503694d2528621cc0b08ebcee0773ad4e936d3cb386f635b0",
        0.9107, "tutorial5-sgd"),
    "densenet": Weights(
        "DenseNet.ckpt", "43c8506c9562f000e13b21f2417bad5a44acce37949fd4d55b3596fc2da2e684",
        "tensorboards/DenseNet/events.out.tfevents.densenet",
        "4d597c62e449894e98e65a6023cd201f334b4fcdc49214ca6e126881cbe449bd",
        0.9023, "tutorial5-adamw"),
}


def tutorial5(name: str) -> Weights:
    """The published Tutorial 5 weights of model ``name``; an unknown name lists the valid ones."""
    if name not in TUTORIAL5:
        raise ValueError(f"no published Tutorial 5 model {name!r}; valid: {', '.join(TUTORIAL5)}")
    return TUTORIAL5[name]
