"""A noisy adapted layer as one product per sample: h_b = (W0 + diag(z_b) ΔW) x_b + b0 + z_b ⊙ Δb.

Multiplicative noise is one value per sample and output channel, shared by the sample's tokens, so it can be folded
into a per-sample weight. Forward then costs one batched product instead of W0 x and ΔW x, and backward one batched
product for the input gradient instead of two; the ΔW gradient is (z ⊙ g)ᵀ x either way. Building the per-sample
weights costs B·out·in memory traffic, which pays only while the weights are small next to the activations:
`AdaptedLinear._per_sample_pays` uses this on the CPU for narrow layers only.
"""

from __future__ import annotations

import torch
from torch import Tensor


class PerSampleNoisyLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w0: Tensor, b0: Tensor | None, dw: Tensor, db: Tensor | None, z: Tensor
                ) -> Tensor:  # type: ignore[override]
        # x [B, N, in], z [B, 1, out]; the per-sample weights are rebuilt in backward rather than kept
        weights = torch.addcmul(w0, z.transpose(1, 2), dw)  # [B, out, in]
        bias = z * db if db is not None else None
        if b0 is not None:
            bias = b0 if bias is None else bias + b0
        h = torch.bmm(x, weights.transpose(1, 2))
        ctx.save_for_backward(x, w0, dw, z)
        ctx.has_db = db is not None
        return h if bias is None else h + bias

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, w0, dw, z = ctx.saved_tensors
        gx = torch.bmm(g, torch.addcmul(w0, z.transpose(1, 2), dw)) if ctx.needs_input_grad[0] else None
        gz = g * z
        gdw = gz.reshape(-1, gz.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        gdb = gz.sum((0, 1)) if ctx.has_db else None
        return gx, None, None, gdw, gdb, None
