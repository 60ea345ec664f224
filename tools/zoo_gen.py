#!/usr/bin/env python3
"""Writes the model zoo (zoo/*.arch) in tessera's architecture format.

Run from the repository root: /usr/bin/python3 tools/zoo_gen.py
The .arch files are committed; this script documents how the longer ones were
made and regenerates them after a format change. Layer names follow PyTorch
state_dict naming (layer1.0.conv1, ...) so fixtures map one to one.
"""
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "zoo")


def write(name, header, lines):
    with open(os.path.join(HERE, name + ".arch"), "w") as f:
        f.write("".join("# " + h + "\n" for h in header))
        f.write("\n".join(lines) + "\n")


def conv_bn_relu(name, out, k=3, stride=1, pad=1, relu=True, bn_name=None):
    lines = [f"conv2d    name={name} out={out} kernel={k} stride={stride} padding={pad} bias=0",
             f"batchnorm name={bn_name or name.replace('conv', 'bn')}"]
    if relu:
        lines.append(f"relu      name={name}.relu")
    return lines


def resnet(depth):
    n = (depth - 2) // 6
    lines = ["input     shape=3x32x32 classes=10"]
    lines += conv_bn_relu("conv1", 16, bn_name="bn1")
    prev, ch = "conv1.relu", 16
    for stage, width in enumerate([16, 32, 64], start=1):
        for b in range(n):
            p = f"layer{stage}.{b}"
            stride = 2 if (stage > 1 and b == 0) else 1
            lines.append(f"conv2d    name={p}.conv1 in={prev} out={width} kernel=3 stride={stride} padding=1 bias=0")
            lines.append(f"batchnorm name={p}.bn1")
            lines.append(f"relu      name={p}.relu1")
            lines.append(f"conv2d    name={p}.conv2 out={width} kernel=3 stride=1 padding=1 bias=0")
            lines.append(f"batchnorm name={p}.bn2")
            short = prev
            if stride != 1 or ch != width:
                # option B of He et al.: 1x1 projection with batch norm
                lines.append(f"conv2d    name={p}.downsample.0 in={prev} out={width} kernel=1 stride={stride} bias=0")
                lines.append(f"batchnorm name={p}.downsample.1")
                short = f"{p}.downsample.1"
            lines.append(f"add       name={p}.add in={p}.bn2,{short}")
            lines.append(f"relu      name={p}.relu2")
            prev, ch = f"{p}.relu2", width
    lines.append("globalavgpool name=avgpool")
    lines.append("dense     name=fc out=classes")
    write(f"resnet{depth}", [f"ResNet-{depth} for CIFAR (He et al. 2016, section 4.2): 3 stages of {n} basic blocks,",
                              "16/32/64 channels, batch norm, 1x1 projection shortcuts when the shape changes."], lines)


def vgg(name, cfg, title):
    lines = ["input     shape=3x32x32 classes=10"]
    i = 0
    for v in cfg:
        if v == "M":
            lines.append(f"maxpool   name=pool{i} kernel=2")
        else:
            lines.append(f"conv2d    name=features.{i} out={v} kernel=3 padding=1 bias=0")
            lines.append(f"batchnorm name=features.{i}.bn")
            lines.append(f"relu      name=features.{i}.relu")
            i += 1
    lines.append("flatten   name=flatten")
    lines.append("dense     name=classifier out=classes")
    write(name, [title, "CIFAR variant: 3x3 convolutions with batch norm, 2x2 max pooling, one linear classifier."],
          lines)


def allcnn_c():
    lines = ["input     shape=3x32x32 classes=10",
             "dropout   name=drop0 p=0.2"]
    spec = [(96, 3, 1, 1), (96, 3, 1, 1), (96, 3, 2, 1), "D",
            (192, 3, 1, 1), (192, 3, 1, 1), (192, 3, 2, 1), "D",
            (192, 3, 1, 0), (192, 1, 1, 0)]
    i, d = 1, 1
    for s in spec:
        if s == "D":
            lines.append(f"dropout   name=drop{d} p=0.5")
            d += 1
            continue
        out, k, st, pad = s
        lines.append(f"conv2d    name=conv{i} out={out} kernel={k} stride={st} padding={pad}")
        lines.append(f"relu      name=relu{i}")
        i += 1
    lines.append(f"conv2d    name=conv{i} out=classes kernel=1")
    lines.append(f"relu      name=relu{i}")
    lines.append("globalavgpool name=gap")
    write("allcnn-c", ["All-CNN-C (Springenberg et al. 2015): strided 3x3 convolutions instead of pooling,",
                       "dropout 20% on the input and 50% after each stride-2 convolution, global average head."],
          lines)


if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for d in (20, 32, 56):
        resnet(d)
    vgg("vgg11", [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"], "VGG-11 (Simonyan & Zisserman 2015)")
    vgg("vgg16", [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
        "VGG-16 (Simonyan & Zisserman 2015)")
    allcnn_c()
