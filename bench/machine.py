"""What a benchmark's deterministic figures depend on besides the code and the seeds: the numeric
libraries' versions and the code path MKL takes on this CPU.

The same code and seeds give the same figures bit for bit only on the same path. torch's matrix products
go through MKL, whose kernels differ by CPU (AVX-512, AVX2, or whatever MKL_CBWR forces), and the instant
model's choices among near-tied forms amplify a last-bit difference. Measured on 2026-11-29, the same
commit on warm_film's 10 pairs (bench/bench_instant.py --pairs 10): validation dE00 5.68 on this
machine's default AVX-512 path, 8.21 with MKL_CBWR=AVX2, 5.56 with MKL_CBWR=COMPATIBLE. Each benchmark's
output records this, so that two results are compared bit for bit only when it matches.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

import torch

PACKAGES = ("torch", "numpy", "opencv-python-headless", "pillow", "scipy", "cma")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu_model(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "versions": versions,
    }


def summary(machine: dict | None = None) -> str:
    """One line for a report: the CPU, the vector path and MKL_CBWR where set, the versions."""
    m = machine or describe()
    path = m["torch_cpu_capability"] + (f", MKL_CBWR={m['mkl_cbwr']}" if m["mkl_cbwr"] else "")
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    return f"machine: {m['cpu']} ({path}); {versions}"
