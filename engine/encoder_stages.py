"""InceptionResNetV1's stages by name: where fine-tuning may start (no torch import, for the CLI)."""

# The network's stages in forward order (facenet-pytorch names); the pooling, dropout, last_linear
# and last_bn that follow are always part of the trained upper part.
STAGES = (
    "conv2d_1a",
    "conv2d_2a",
    "conv2d_2b",
    "maxpool_3a",
    "conv2d_3b",
    "conv2d_4a",
    "conv2d_4b",
    "repeat_1",
    "mixed_6a",
    "repeat_2",
    "mixed_7a",
    "repeat_3",
    "block8",
)
TRAINABLE_FROM = ("repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "last_linear")
# The stem through repeat_1: about 1 M parameters on maps down to 17 x 17, where blending
# artefacts are still visible. ``FinetuneConfig.train_low`` trains them too.
LOW_STAGES = STAGES[: STAGES.index("mixed_6a")]
