"""Where and in what precision the network runs: device and dtype resolution."""

from __future__ import annotations

import torch

from .errors import InputError

_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU; asking for missing CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"device {device!r} is not a device name ({err})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
            "use device='cpu'"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r}: only 'cpu', 'cuda' and 'auto' are supported")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Compute precision: 'auto' is fp16 on CUDA and fp32 on CPU (no fp16 on CPU)."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    resolved = dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(str(dtype))
    if resolved not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"dtype {dtype!r} is not one of auto, fp32, fp16, bf16")
    if resolved == torch.float16 and device.type == "cpu":
        raise InputError("dtype fp16 is not supported on CPU; use fp32 or bf16")
    return resolved
