"""The benchmark's shape suites (real layers), shared by `bench` (timing, x86 or a board) and
`bench --emulated` (counting under qemu)."""

# (name, channels, spatial size, kernel, stride, padding); conv1d: size = length
SUITE = [
    ("mnv2-32x112-k3", 32, 112, 3, 1, 1),
    ("mnv2-96x112-k3s2", 96, 112, 3, 2, 1),
    ("mnv2-144x56-k3", 144, 56, 3, 1, 1),
    ("mnv2-192x28-k3", 192, 28, 3, 1, 1),
    ("mnv2-576x14-k3s2", 576, 14, 3, 2, 1),
    ("mnv2-960x7-k3", 960, 7, 3, 1, 1),
    ("mnv3-72x56-k5s2", 72, 56, 5, 2, 2),
    ("mnv3-672x14-k5s2", 672, 14, 5, 2, 2),
    ("effb0-240x28-k5", 240, 28, 5, 1, 2),
    ("effb0-672x14-k5", 672, 14, 5, 1, 2),
    ("effb0-1152x7-k5", 1152, 7, 5, 1, 2),
    ("convnext-96x56-k7", 96, 56, 7, 1, 3),
    ("convnext-384x14-k7", 384, 14, 7, 1, 3),
    ("convnext-768x7-k7", 768, 7, 7, 1, 3),
    ("seed-384x56-k3", 384, 56, 3, 1, 1),
    ("mamba-conv1d-1536xL1024-k4", 1536, 1024, 4, 1, 3),
]
SEED = "seed-384x56-k3"

# Grouped (not depthwise) layers: (name, in channels, out channels, groups, size, kernel,
# stride, padding). ResNeXt-50 32x4d: the 3x3 convs of the four stages (and stage 2's
# strided first one); RegNetY-800MF: group width 16; ShuffleNet v1: the grouped 1x1 convs
# (g=3, g=8) around the depthwise 3x3; AlexNet: the groups=2 layers of the original net.
GROUPED_SUITE = [
    ("resnext-128x56-g32", 128, 128, 32, 56, 3, 1, 1),
    ("resnext-256x56-g32-s2", 256, 256, 32, 56, 3, 2, 1),
    ("resnext-256x28-g32", 256, 256, 32, 28, 3, 1, 1),
    ("resnext-512x14-g32", 512, 512, 32, 14, 3, 1, 1),
    ("resnext-1024x7-g32", 1024, 1024, 32, 7, 3, 1, 1),
    ("regnety-64x56-g4", 64, 64, 4, 56, 3, 1, 1),
    ("regnety-144x28-g9", 144, 144, 9, 28, 3, 1, 1),
    ("regnety-320x14-g20", 320, 320, 20, 14, 3, 1, 1),
    ("regnety-784x7-g49", 784, 784, 49, 7, 3, 1, 1),
    ("shufflenet-240to60x28-g3-k1", 240, 60, 3, 28, 1, 1, 0),
    ("shufflenet-60to240x28-g3-k1", 60, 240, 3, 28, 1, 1, 0),
    ("shufflenet-384to96x28-g8-k1", 384, 96, 8, 28, 1, 1, 0),
    ("shufflenet-96to384x28-g8-k1", 96, 384, 8, 28, 1, 1, 0),
    ("shufflenet-1536to384x7-g8-k1", 1536, 384, 8, 7, 1, 1, 0),
    ("alexnet-96to256x27-g2-k5", 96, 256, 2, 27, 5, 1, 2),
    ("alexnet-384x13-g2", 384, 384, 2, 13, 3, 1, 1),
    ("alexnet-384to256x13-g2", 384, 256, 2, 13, 3, 1, 1),
]
SUITES = ("depthwise", "grouped")
