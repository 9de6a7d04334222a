"""Time the compiled align ops against the pure-PyTorch fallback (a benchmark, not a test).

    python bench/bench_ops.py [--device cuda] [--boxes 100] [--size 9] [--threads 1]

Shapes default to the model's: 8 channels at stride 16 of a 256 x 384 input, a = 9 (GAICv1).
"""

from __future__ import annotations

import argparse
import time

import torch

from s2ccrop.ops import _fallback, extension_status


def make_inputs(boxes: int, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(1, 8, 16, 24, generator=gen)
    xy1 = torch.rand(boxes, 2, generator=gen) * torch.tensor([192.0, 128.0])
    wh = 64 + torch.rand(boxes, 2, generator=gen) * torch.tensor([192.0, 128.0])
    rois = torch.cat([torch.zeros(boxes, 1), xy1, xy1 + wh], dim=1)
    return features.to(device), rois.to(device)


def time_call(fn, device: str, repeats: int) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--size", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded, reason = extension_status()
    print(f"extension: {reason}")
    features, rois = make_inputs(args.boxes, args.device)
    a = args.size + 1  # the avg variants run the op at a + 1
    print(f"device {args.device}, {args.boxes} boxes, features {tuple(features.shape)}, output {a}x{a}")
    for kind in ("roi_align", "rod_align"):
        impls = {"fallback": getattr(_fallback, kind)}
        if loaded:
            impls["compiled"] = getattr(torch.ops.s2ccrop, kind)
        for name, op in impls.items():
            forward = time_call(lambda: op(features, rois, a, a, 1 / 16), args.device, args.repeats)
            f = features.clone().requires_grad_()

            def forward_backward():
                op(f, rois, a, a, 1 / 16).sum().backward()

            both = time_call(forward_backward, args.device, args.repeats)
            print(f"  {kind:<10} {name:<9} forward {forward:8.3f} ms   forward+backward {both:8.3f} ms")


if __name__ == "__main__":
    main()
