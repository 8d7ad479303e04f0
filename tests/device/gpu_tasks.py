"""The task the GPU check runs on a worker: matrix products on the first CUDA device for a few seconds, holding
2 GiB more, so that the task's own GPU memory is plainly above 1 GiB."""
from __future__ import annotations

import time

from celery import shared_task

from omegaml_otel.tasks import OmegaTask


@shared_task(name="device.gpu_burn", base=OmegaTask)
def gpu_burn(seconds: float = 4.0) -> dict:
    import torch  # the device image's PyTorch; imported in the worker child, after the fork

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    held = torch.ones(2**30, device="cuda", dtype=torch.int16)  # 2 GiB the task's own GPU memory must show
    products = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
        products += 20
    return {"products": products, "device": torch.cuda.get_device_name(0), "held_bytes": held.numel() * 2}
