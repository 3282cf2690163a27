"""Training throughput: the seed projects' pipeline against the library's, on one device, in one run.

    python benchmarks/throughput.py --dataset pneumoniamnist --sizes 28 64 --out benchmarks/results/h100.json

Three pipelines train the same ResNet-18 (3x3 stem, no max-pool) for a fixed number of steps:

* ``seed``     -- what the course's seed projects did: medmnist's dataset class with PIL transforms per image,
                  a DataLoader with worker processes, fp32, NCHW;
* ``readable`` -- the library's per-image path (:class:`medssl.data.MedMNISTDataset` + torchvision v2),
                  DataLoader in the main process;
* ``library``  -- the library's default: the split held on the device as uint8, augmentation per batch on the
                  device (:class:`medssl.augment.BatchAugment`), the library's mixed precision (bf16 on compute
                  capability >= 8.0, fp16 with loss scaling on older GPUs) and channels_last on CUDA, a fused
                  optimizer, optionally ``torch.compile``.

For each (task, size, pipeline) it prints images/s (for SimCLR: view-images/s, two per image), the speed-up over
``seed``, FLOPs per training image (counted with ``torch.utils.flop_counter``) and the model FLOPs utilisation
against the device's dense bf16 peak (``--peak-tflops``, looked up for known GPUs). Results go to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from medssl import accel
from medssl.augment import BatchAugment, ssl_augmentation, supervised_augmentation
from medssl.data import MedMNISTDataset, TensorSplit, load_split, to_float
from medssl.models import build_model
from medssl.registry import get_spec
from medssl.ssl import SSLDataset, build_ssl_model, two_view_batches
from medssl.utils import write_json

# Dense bf16 tensor-core peaks from the vendors' datasheets, in TFLOP/s.
PEAK_BF16_TFLOPS = {"H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0,
                    "L4": 121.0, "T4": 65.0, "V100": 125.0}


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or "cpu", None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key.lower().replace(" ", "") in name.lower().replace(" ", ""):
            return name, peak
    return name, None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_label(target):
    return int(target[0])


class SeedTwoViews(torch.utils.data.Dataset):
    """The seed projects' SSLDataset: a PIL image, transformed twice."""

    def __init__(self, imgs, transform):
        self.imgs, self.transform = imgs, transform

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        from PIL import Image

        pil = Image.fromarray(self.imgs[i])
        return self.transform(pil), self.transform(pil)


class SeedImages(torch.utils.data.Dataset):
    """medmnist's dataset class for a synthetic set (it has none): a PIL image per item, transformed.

    ``images`` come as the library stores them, (N, C, H, W); ``imgs`` is medmnist's layout, (N, H, W[, C]).
    """

    def __init__(self, images, labels, transform):
        self.imgs = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
        self.labels, self.transform = labels, transform

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.imgs[i])), int(self.labels[i])


def seed_style_loader(key: str, size: int, batch_size: int, ssl: bool, workers: int):
    """The seed projects' input pipeline: PIL transforms per image in DataLoader workers."""
    import medmnist
    from torchvision import transforms as T

    from medssl.data import data_root, ensure_file

    ensure_file(key, size)
    aug = [T.RandomHorizontalFlip(), T.RandomRotation(10), T.ColorJitter(0.1, 0.1)]
    if ssl:
        aug = [T.RandomResizedCrop(size, scale=(0.7, 1.0))] + aug
    tf = T.Compose(aug + [T.ToTensor(), T.Normalize([0.5], [0.5])])
    spec = get_spec(key)
    if spec.synthetic:  # smoke runs without the real files: the same per-image PIL path over the synthetic npz
        data = load_split(key, "train", size=size)
        ds = SeedImages(data.images, data.labels, tf)
    else:
        cls = getattr(medmnist, spec.python_class)
        ds = cls(split="train", transform=tf, target_transform=_first_label, root=str(data_root()), size=size)
    if ssl:
        ds = SeedTwoViews(ds.imgs, tf)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(),  # the seeds pinned on their GPUs
                                       drop_last=True, persistent_workers=workers > 0)


def readable_loader(key: str, size: int, batch_size: int, ssl: bool):
    data = load_split(key, "train", size=size)
    spec = get_spec(key)
    if ssl:
        ds = SSLDataset(data, ssl_augmentation(spec.modality, "mild"))
    else:
        ds = MedMNISTDataset(data, supervised_augmentation("light", spec.modality).torchvision(size))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)


def library_batches(key: str, size: int, batch_size: int, ssl: bool, device: torch.device):
    data = load_split(key, "train", size=size)
    spec = get_spec(key)
    split = TensorSplit(data, device)
    g_shuffle = torch.Generator().manual_seed(0)
    g_aug = torch.Generator(device=device).manual_seed(1)
    while True:
        if ssl:
            yield from two_view_batches(split, batch_size, ssl_augmentation(spec.modality, "mild"), g_shuffle, g_aug)
        else:
            aug = BatchAugment(supervised_augmentation("light", spec.modality))
            for xb, yb in split.batches(batch_size, shuffle=True, generator=g_shuffle, drop_last=True):
                yield to_float(aug(xb, g_aug)), yb


def cycle(loader):
    while True:
        yield from loader


def make_model(key: str, size: int, ssl: bool, device: torch.device, fast: bool, compile_model: bool,
               arch: str = "resnet18"):
    spec = get_spec(key)
    model = build_model(arch, spec.n_classes, spec.n_channels, input_size=size, stem="small")
    if ssl:
        model = build_ssl_model("simclr", model.encoder, model.feature_dim)
    model = model.to(device)
    if fast and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    fused = fast and device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=fused)
    step_model = torch.compile(model) if (compile_model and fast) else model
    return model, step_model, opt


def train_step(step_model, opt, batch, ssl: bool, device: torch.device, fast: bool, scaler=None) -> None:
    """One optimizer step. The library pipeline uses the library's precision policy (``accel.autocast``: bf16 on
    compute capability >= 8.0, fp16 with loss scaling on older GPUs, fp32 on CPU); the others train in fp32."""
    amp = accel.autocast(device) if fast else torch.autocast("cpu", enabled=False)
    if ssl:
        x1, x2 = (t.to(device, non_blocking=True) for t in batch)
        if fast and device.type == "cuda":
            x1, x2 = x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
        with amp:
            loss = step_model(x1, x2)
    else:
        x, y = (t.to(device, non_blocking=True) for t in batch)
        if fast and device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            loss = F.cross_entropy(step_model(x), y)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


def flops_per_image(key: str, size: int, ssl: bool, device: torch.device, arch: str = "resnet18") -> float:
    """Forward + backward FLOPs of one training step divided by the images it consumes."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = get_spec(key)
    model, _, opt = make_model(key, size, ssl, device, fast=False, compile_model=False, arch=arch)
    b = 8
    x = torch.randn(b, spec.n_channels, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        if ssl:
            loss = model(x, x.flip(3))
        else:
            loss = F.cross_entropy(model(x), torch.zeros(b, dtype=torch.long, device=device))
        loss.backward()
    images = 2 * b if ssl else b
    return counter.get_total_flops() / images


def measure(pipeline: str, key: str, size: int, ssl: bool, device: torch.device, batch_size: int, steps: int,
            warmup: int, workers: int, compile_model: bool, arch: str = "resnet18") -> dict:
    torch.manual_seed(0)
    fast = pipeline == "library"
    model, step_model, opt = make_model(key, size, ssl, device, fast, compile_model, arch)
    scaler = accel.grad_scaler(device) if fast else None
    model.train()
    if pipeline == "seed":
        batches = cycle(seed_style_loader(key, size, batch_size, ssl, workers))
    elif pipeline == "readable":
        batches = cycle(readable_loader(key, size, batch_size, ssl))
    else:
        batches = library_batches(key, size, batch_size, ssl, device)
    for _ in range(warmup):
        train_step(step_model, opt, next(batches), ssl, device, fast, scaler)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(step_model, opt, next(batches), ssl, device, fast, scaler)
    sync(device)
    seconds = time.perf_counter() - t0
    images = steps * batch_size * (2 if ssl else 1)
    return {"pipeline": pipeline, "task": "simclr" if ssl else "supervised", "size": size, "batch_size": batch_size,
            "steps": steps, "seconds": seconds, "images_per_s": images / seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--sizes", type=int, nargs="+", default=[28, 64])
    p.add_argument("--model", default="resnet18", choices=["resnet18", "smallcnn"],
                   help="resnet18 = ResNet-18 with 3x3 stem (the issue's model); smallcnn shows input-pipeline cost")
    p.add_argument("--tasks", nargs="+", default=["supervised", "simclr"], choices=["supervised", "simclr"])
    p.add_argument("--pipelines", nargs="+", default=["seed", "readable", "library"],
                   choices=["seed", "readable", "library"])
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 (seed style) on every pipeline")
    p.add_argument("--library-batch-size", dest="big_batch", type=int, default=None,
                   help="a larger batch for the library pipeline only (reported separately)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for the seed-style pipeline")
    p.add_argument("--compile", action="store_true", help="torch.compile the library pipeline's model")
    p.add_argument("--device", default="auto")
    p.add_argument("--peak-tflops", type=float, default=None, help="device bf16 dense peak (default: looked up)")
    p.add_argument("--out", default=None, help="JSON file for the results")
    args = p.parse_args(argv)

    from medssl.utils import resolve_device

    device = resolve_device(args.device)
    name, peak = device_peak(device)
    peak = args.peak_tflops or peak
    bs = args.batch_size or 128
    rows = []
    print(f"device: {name} | torch {torch.__version__} | peak bf16 {peak or '?'} TFLOP/s", flush=True)
    for task in args.tasks:
        ssl = task == "simclr"
        for size in args.sizes:
            fpi = flops_per_image(args.dataset, size, ssl, device, args.model)
            base = None
            plan = [(pl, bs) for pl in args.pipelines]
            if args.big_batch and "library" in args.pipelines:
                plan.append(("library", args.big_batch))
            for pipeline, b in plan:
                r = measure(pipeline, args.dataset, size, ssl, device, b, args.steps, args.warmup, args.workers,
                            args.compile, args.model)
                r["gflop_per_image"] = fpi / 1e9
                r["achieved_tflops"] = r["images_per_s"] * fpi / 1e12
                r["mfu"] = r["achieved_tflops"] / peak if peak else None
                if pipeline == "seed" and b == bs:
                    base = r["images_per_s"]
                r["speedup_vs_seed"] = r["images_per_s"] / base if base else None
                rows.append(r)
                mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
                sp = f"{r['speedup_vs_seed']:.1f}x" if r["speedup_vs_seed"] else "-"
                print(f"{task:10s} {size:3d}px {pipeline:9s} bs={b:<5d} {r['images_per_s']:10.0f} img/s  "
                      f"x{sp:>7s}  {r['gflop_per_image']:.2f} GFLOP/img  MFU {mfu}", flush=True)
    result = {"model": args.model, "device": name, "torch": torch.__version__, "python": platform.python_version(),
              "dataset": args.dataset, "synthetic": get_spec(args.dataset).synthetic, "peak_bf16_tflops": peak,
              "argv": sys.argv[1:], "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, result)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(result, indent=1)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
