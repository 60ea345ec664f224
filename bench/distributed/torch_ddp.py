#!/usr/bin/python3
"""PyTorch side of bench/distributed/run.sh: the same CIFAR ResNet-20
(bench/resnet20/torch_bench.py) trained data-parallel with DistributedDataParallel over
gloo on loopback, WORLD processes x 1 thread, global batch 128 split evenly, SGD with
momentum, random 3x32x32 input (tessera's side reads CIFAR-10, augmentation included).
Prints one line: world, steps, seconds, images/s (median step time of rank 0).

usage: torch_ddp.py WORLD STEPS
"""
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "resnet20"))
from torch_bench import ResNet20  # noqa: E402

BATCH = 128


def run(rank, world, steps, port, out):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(1)
    model = torch.nn.parallel.DistributedDataParallel(ResNet20())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    per = BATCH // world
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(per, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (per,), generator=g)
    times = []
    for s in range(steps + 3):  # 3 warm-up steps
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if s >= 3:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        med = statistics.median(times)
        out.put((med, BATCH / med))
    dist.destroy_process_group()


def main():
    world, steps = int(sys.argv[1]), int(sys.argv[2])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=run, args=(r, world, steps, port, out)) for r in range(world)]
    for p in procs:
        p.start()
    med, ips = out.get()
    for p in procs:
        p.join()
    print(f"torch ddp: world {world}, {steps} steps, median step {1000 * med:.1f} ms, {ips:.0f} images/s")


if __name__ == "__main__":
    main()
