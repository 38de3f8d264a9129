#!/usr/bin/python3
"""Exports a randomly initialised DenseNet-121 as a benchmark model repository entry.

  export_densenet.py --out REPO_DIR [--seed 7] [--kind cpu|cuda] [--count N]
                     [--precision fp32|fp16|bf16] [--max-batch-size B]
                     [--queue-delay-us U] [--preferred 32,64]

Writes REPO_DIR/densenet121-bench/1/model.pt and REPO_DIR/densenet121-bench/model.yaml.
The network has 1x224x224 input and 14 logits, the shape of a typical
chest-radiograph classifier, so it exercises the worker with realistic compute.
Its weights are random: its outputs mean nothing and it is for throughput and
latency benchmarks only.

The file is traced on the CPU in float32; the worker moves it to the device
and precision that model.yaml names. Uses torchvision's DenseNet-121 when
torchvision is installed and an equivalent built-in definition otherwise.
Works with PyTorch 1.13 and 2.x.
"""
import argparse
import os
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAME = "densenet121-bench"
SIZE = 224
LABELS = 14


class _DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(y)))


class _DenseBlock(nn.Module):
    def __init__(self, layers, cin, growth, bn_size):
        super().__init__()
        self.layers = nn.ModuleList([_DenseLayer(cin + i * growth, growth, bn_size) for i in range(layers)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class _Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm2d(cin)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv2d(cin, cout, 1, bias=False)),
            ("pool", nn.AvgPool2d(2, stride=2)),
        ]))


class DenseNet121(nn.Module):
    """The torchvision architecture (growth 32, blocks 6/12/24/16, bn_size 4, 64 initial features)."""

    def __init__(self, num_classes, in_channels=1, growth=32, blocks=(6, 12, 24, 16), bn_size=4, init_features=64):
        super().__init__()
        layers = [
            ("conv0", nn.Conv2d(in_channels, init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
        ]
        channels = init_features
        for i, n in enumerate(blocks):
            layers.append(("denseblock%d" % (i + 1), _DenseBlock(n, channels, growth, bn_size)))
            channels += n * growth
            if i != len(blocks) - 1:
                layers.append(("transition%d" % (i + 1), _Transition(channels, channels // 2)))
                channels //= 2
        layers.append(("norm5", nn.BatchNorm2d(channels)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = F.relu(self.features(x))
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


def build(seed):
    torch.manual_seed(seed)
    try:
        import torchvision
    except ImportError:
        torchvision = None
    if torchvision is None:
        return DenseNet121(LABELS), "built-in definition"
    # Keyword differs across torchvision releases (pretrained -> weights);
    # neither is passed, and both default to random weights.
    net = torchvision.models.densenet121(num_classes=LABELS)
    old = net.features.conv0
    net.features.conv0 = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    nn.init.kaiming_normal_(net.features.conv0.weight)
    return net, "torchvision %s" % torchvision.__version__


def yaml_text(args, source):
    labels = []
    for i in range(1, LABELS + 1):
        labels.append(
            '    - name: finding_%02d\n'
            '      code: {scheme: "99SRBENCH", value: "F%02d", meaning: "Benchmark output %d"}\n'
            '      threshold: 0.5\n' % (i, i, i))
    preferred = ", ".join(str(b) for b in args.preferred)
    return (
        "name: %s\n"
        "description: >-\n"
        "  DenseNet-121 (%s) with a 1-channel 224x224 input and 14 outputs and\n"
        "  random weights (seed %d), sized like a chest-radiograph classifier.\n"
        "intended_use: >-\n"
        "  Benchmark only. Random weights; its outputs carry no meaning. Not a medical device; not for clinical use.\n"
        "platform: torchscript\n"
        "input:\n"
        "  channels: 1\n"
        "  height: %d\n"
        "  width: %d\n"
        "  scaling: minmax\n"
        "  mean: [0.5]\n"
        "  std: [0.25]\n"
        "output:\n"
        "  scores_activation: sigmoid\n"
        "  heatmap: false\n"
        "  heatmap_activation: sigmoid\n"
        "  labels:\n"
        "%s"
        "applicability:\n"
        "  modalities: [CR, DX]\n"
        "  body_parts: [CHEST]\n"
        '  sop_classes: ["1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1"]\n'
        "max_batch_size: %d\n"
        "dynamic_batching:\n"
        "  max_queue_delay_us: %d\n"
        "  preferred_batch_sizes: [%s]\n"
        "  max_queue_size: 512\n"
        "  priority_levels: 2\n"
        "instance_group:\n"
        "  kind: %s\n"
        "  count: %d\n"
        "precision: %s\n"
        "version_policy:\n"
        "  latest: 1\n"
        "training:\n"
        "  seed: %d\n"
        "  script: tools/models/export_densenet.py\n"
        "  train_images: 0\n"
    ) % (MODEL_NAME, source, args.seed, SIZE, SIZE, "".join(labels), args.max_batch_size,
         args.queue_delay_us, preferred, args.kind, args.count, args.precision, args.seed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="model repository directory")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kind", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--count", type=int, default=1, help="instances of the model")
    ap.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    ap.add_argument("--preferred", default="32,64",
                    type=lambda s: [int(v) for v in s.split(",") if v.strip()],
                    help="comma-separated preferred batch sizes")
    args = ap.parse_args()
    if any(b < 1 or b > args.max_batch_size for b in args.preferred):
        ap.error("--preferred sizes must lie in 1..--max-batch-size")

    net, source = build(args.seed)
    net.eval()
    example = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        traced = torch.jit.trace(net, example)
        # A different batch size than the trace's catches shapes frozen into the graph.
        check = torch.randn(3, 1, SIZE, SIZE)
        if not torch.allclose(traced(check), net(check), atol=1e-4, rtol=1e-4):
            raise SystemExit("traced DenseNet-121 disagrees with the eager model")

    entry = os.path.join(args.out, MODEL_NAME)
    os.makedirs(os.path.join(entry, "1"), exist_ok=True)
    path = os.path.join(entry, "1", "model.pt")
    traced.save(path)
    with open(os.path.join(entry, "model.yaml"), "w") as f:
        f.write(yaml_text(args, source))
    print("wrote %s (%s, %.1f MB)" % (path, source, os.path.getsize(path) / 1e6))


if __name__ == "__main__":
    main()
