"""A noisy adapted layer as one product per sample: h_b = (W0 + diag(z_b) ΔW) x_b + b0 + z_b ⊙ Δb.

Multiplicative noise is one value per sample and output channel, shared by the sample's tokens, so it can be folded
into a per-sample weight. Forward then costs one product per sample instead of W0 x and ΔW x, and backward one for
the input gradient instead of two; the ΔW gradient is (z ⊙ g)ᵀ x either way: 3 products where the plain form
takes 5. The per-sample weights are built a few samples at a time into one buffer that stays in the CPU's cache
(`CHUNK_BYTES`), never for the whole batch at once: built for all B samples they cost B·out·in memory traffic,
measured 1.15-1.45x slower than two products on vit_tiny's 192-wide layers, while chunked they are 0.72-0.78x
(`benchmarks/RESULTS.md`). Used on the CPU only; a GPU runs the two products as large batched matmuls.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_BYTES = 512 * 1024  # per-sample weights built at once: about an L2 cache (one 192x576 fp32 weight is 442 KB)


def _chunk(w0: Tensor) -> int:
    return max(1, CHUNK_BYTES // (w0.numel() * w0.element_size()))


def _per_sample_products(a: Tensor, w0: Tensor, dw: Tensor, z: Tensor, transpose: bool) -> Tensor:
    """a_b @ (W0 + diag(z_b) ΔW)ᵀ for every sample b (or without the transpose: the input gradient)."""
    batch, tokens = a.shape[:2]
    out = a.new_empty(batch, tokens, w0.shape[0] if transpose else w0.shape[1])
    step = _chunk(w0)
    buffer = w0.new_empty(min(step, batch), *w0.shape)
    zt = z.transpose(1, 2)  # [B, out, 1]
    for s in range(0, batch, step):
        e = min(s + step, batch)
        weights = torch.addcmul(w0, zt[s:e], dw, out=buffer[: e - s])
        torch.bmm(a[s:e], weights.transpose(1, 2) if transpose else weights, out=out[s:e])
    return out


class PerSampleNoisyLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w0: Tensor, b0: Tensor | None, dw: Tensor, db: Tensor | None, z: Tensor) -> Tensor:  # type: ignore[override]
        # x [B, N, in], z [B, 1, out]; the per-sample weights are rebuilt in backward rather than kept
        x = x.contiguous()
        h = _per_sample_products(x, w0, dw, z, transpose=True)
        if db is not None:
            h.addcmul_(z, db)
        if b0 is not None:
            h.add_(b0)
        ctx.save_for_backward(x, w0, dw, z)
        ctx.has_db = db is not None
        return h

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, w0, dw, z = ctx.saved_tensors
        g = g.contiguous()
        gx = _per_sample_products(g, w0, dw, z, transpose=False) if ctx.needs_input_grad[0] else None
        gz = g * z
        gdw = gz.reshape(-1, gz.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        gdb = gz.sum((0, 1)) if ctx.has_db else None
        return gx, None, None, gdw, gdb, None
