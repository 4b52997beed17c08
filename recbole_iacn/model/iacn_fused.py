"""The parameter-free hot part of the IaCN loss as ``torch.autograd.Function``\s with hand-derived backwards
(``iacn_fused_loss: true``; docs/method.md sections 3-4 give the maths).

With ``iacn_routing_stop_gradient: true`` (the default) the loss runs::

    y = RoutingAggregate(c)      M·y (the bilinear nn.Linear)      u = Squash(·)      I = InterestMLP(u, profile)
    −log P(c_t | i_u) = FusedAttentionSoftmax(I, C)

The bilinear map is linear without bias, so ``s_j = Σ_i a_ij M c_i = M·(Σ_i a_ij c_i) = M·y_j``: the module
is applied to the ``K`` aggregated vectors of each row instead of its ``L`` behaviours, and the routing
weights ``a`` (constants under stop-gradient) are found by refinement iterations that run without
gradient, as today's. With ``false``, :class:`FusedRouting` takes ``x = M·c`` (the module applied to the
behaviours) and backpropagates through every iteration. Everything with parameters (E_aux and its gradient
scaler, M, the interest MLP, the profile embeddings) stays a normal module between the Functions, which
autograd differentiates as before; the Functions record one node each instead of the dozens of
elementwise, reduction, masking and ``bmm`` nodes autograd records for the same maths, and their backwards
are a few batched products written out. Values and gradients equal those of
:meth:`recbole_iacn.model.iacn.IaCN._candidate_losses` up to rounding (``tests/test_iacn_fused.py``);
``benchmarks/iacn_loss.py`` times both.

Notation: B rows, L behaviour slots, K interest slots, h the capsule width, ``g·`` the gradient of the
(scalar) training loss with respect to ``·``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional

from recbole_iacn.model.layers import masked_softmax


def _float32_under_autocast(forward):
    """Run a Function's ``forward`` in float32 with autocast off (inputs cast), on CPU and CUDA alike: the
    hand-derived backwards combine saved tensors of one dtype, which mixed precision would break."""
    for device in ("cpu", "cuda"):
        forward = torch.amp.custom_fwd(forward, device_type=device, cast_inputs=torch.float32)
    return forward


def _autocast_as_forward(backward):
    """A Function's ``backward`` under the autocast state its forward ran with (see above)."""
    for device in ("cpu", "cuda"):
        backward = torch.amp.custom_bwd(backward, device_type=device)
    return backward


def squash_parts(s: torch.Tensor, dim: int = -1):
    """``u = f(n)·s``, ``n = ‖s‖``, ``f = n / (1 + n²)`` over ``dim`` (:func:`recbole_iacn.model.iacn.squash`
    is its ``u``); returns ``u``, ``n`` and ``f``."""
    norm = torch.linalg.vector_norm(s, dim=dim, keepdim=True)
    factor = norm / (1.0 + norm * norm)
    return s * factor, norm, factor


def _squash_backward(s, norm, factor, grad_u):
    """``g_s`` of ``u = f(n)·s``: the Jacobian is ``f·I + (f'(n)/n)·s sᵀ`` (symmetric), and with
    ``r = 1/(1 + n²)`` (so ``f = n r``), ``f'(n) = (1 − n²) r² = (2r − 1) r``, so
    ``g_s = f·g_u + ((2r − 1) r / n)·(sᵀg_u)·s``. At ``s = 0`` the second term is 0 (``sᵀg_u = 0``; ``n`` is
    clamped to the smallest normal number so that its factor stays finite), as autograd's."""
    r = torch.reciprocal(1.0 + norm * norm)
    slope = (2.0 * r - 1.0) * r / norm.clamp_min(torch.finfo(norm.dtype).tiny)
    return torch.addcmul(factor * grad_u, s, slope * (s * grad_u).sum(-1, keepdim=True))


class Squash(torch.autograd.Function):
    """``squash(s) = ‖s‖ / (1 + ‖s‖²) · s`` over the last dimension, with the backward of
    :func:`_squash_backward`."""

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, s):
        capsules, norm, factor = squash_parts(s)
        ctx.save_for_backward(s, norm, factor)
        return capsules

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_capsules):
        return _squash_backward(*ctx.saved_tensors, grad_capsules)


def fused_squash(s: torch.Tensor) -> torch.Tensor:
    return Squash.apply(s)


def _row_sums(x: torch.Tensor) -> torch.Tensor:
    """``x.sum(-1, keepdim=True)`` as a product with a column of ones: on CPU several times faster for the
    short last dimension (h ≈ 18) of the routing's inputs than a reduction over it."""
    return torch.matmul(x, x.new_ones(x.shape[-1], 1))


class ScaledNormalise(torch.autograd.Function):
    """``ĉ = s·c / max(‖c‖, 1e-12)`` over the last dimension (``s·normalize(c)``, the routing's input).

    Backward, with ``ρ = s / max(‖c‖, ε)``: ``g_c = ρ·(g_ĉ − ĉ (ĉᵀg_ĉ) / s²)`` where ``‖c‖ > ε`` (the
    Jacobian ``ρ (I − ĉĉᵀ/s²)``), and ``g_c = ρ·g_ĉ`` (``ĉ = 0``) for a zero ``c`` such as the padding row."""

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, c, scale: float):
        inverse = scale * torch.rsqrt(_row_sums(c * c).clamp_min(1e-24))  # [..., 1]
        normalised = c * inverse
        ctx.save_for_backward(normalised, inverse)
        ctx.scale = scale
        return normalised

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad):
        normalised, inverse = ctx.saved_tensors
        along = _row_sums(grad * normalised) / (ctx.scale * ctx.scale)
        return inverse * (grad - normalised * along), None


def scaled_normalise(c: torch.Tensor, scale: float) -> torch.Tensor:
    return ScaledNormalise.apply(c, scale)


def _initial_logits(initial_logits, interest_mask, length, dtype):
    """``b⁰``, kept ``[K, B, L]``: the fixed initial logits, ``finfo.min`` on the unused interests ``j ≥ K_u``
    (their weight underflows to exactly 0, so their capsule is 0). The softmax over K then runs over the
    outermost dimension, with the B·L values of each interest contiguous: on CPU about 2.5x faster than
    over the middle dimension of ``[B, K, L]`` and 30x faster than over a last dimension of size K; ``bmm``
    reads the ``[B, K, L]`` view ``transpose(0, 1)`` as fast as a contiguous tensor."""
    unused = torch.zeros(interest_mask.shape[1], interest_mask.shape[0], 1, dtype=dtype, device=interest_mask.device)
    unused.masked_fill_(~interest_mask.t().unsqueeze(-1), torch.finfo(dtype).min)
    return initial_logits[:length].t().to(dtype).unsqueeze(1) + unused  # [K, 1, L] + [K, B, 1]


class RoutingAggregate(torch.autograd.Function):
    """Stop-gradient B2I routing up to the last aggregation: behaviours ``c [B, L, h]`` (padded slots
    holding anything), the bilinear weight ``M [h, h]`` (no gradient: the refinement runs on
    ``stop_gradient(x̂)``, MIND's and ComiRec's code) and the routing scale ``s`` → ``y = a^{r−1} ĉ [B, K, h]``,
    from which the caller forms ``u = squash(M y)`` with the module ``M``.

    The routing's input is ``ĉ_i = ρ_i c_i`` with ``ρ_i = s/‖c_i‖`` (``ρ_i = 1`` when ``s = 0``, MIND's form)
    and ``ρ_i = 0`` on padded slots; ``ĉ`` itself is never formed. Forward: with ``b⁰`` from
    :func:`_initial_logits`, for ``t = 0 … r−2``::

        aᵗ = softmax_K(bᵗ)     uᵗ = squash(aᵗ x̂)     bᵗ⁺¹ = bᵗ + uᵗ x̂ᵀ      (x̂ = ĉ Mᵀ = ρ ⊙ c Mᵀ)

    then ``a^{r−1} = softmax_K(b^{r−1})`` and ``y = a^{r−1} ĉ = w c`` with ``w = a^{r−1} ⊙ ρᵀ [B, K, L]``: the
    weights of :class:`recbole_iacn.model.iacn.BehaviourToInterestRouting`. The iterations need no gradient,
    and run on the behaviours' Gram matrix ``G = x̂ x̂ᵀ [B, L, L]``, formed once: with ``sᵗ = aᵗ x̂`` and
    ``f(n) = n/(1 + n²)``, ``uᵗ x̂ᵀ = f(‖sᵗ‖)·(aᵗ G)`` and ``‖sᵗ_j‖² = Σ_i (aᵗ G)_ji aᵗ_ji``, so each iteration
    is one ``bmm`` and a few ``[B, K, L]`` products instead of two ``bmm`` and a squash over ``h``.

    Backward: the weights are constants (stop-gradient), so ``g_ĉ = (a^{r−1})ᵀ g_y``, and through the
    normalisation (Jacobian ``ρ (I − ĉĉᵀ/s²)``) ``g_c = ρ g_ĉ − ρ ĉ (ĉᵀ g_ĉ)/s² = wᵀ g_y − c ⊙ ρ² t/s²`` with
    ``t_i = c_iᵀ (wᵀ g_y)_i``; at ``s = 0``, ``g_c = wᵀ g_y``. Padded slots (``ρ = 0``) get 0; a zero ``c`` on
    a real slot (E_aux's padding row) gets ``ρ·g_ĉ`` with ``ρ = s/1e-12``, as ``s·normalize(c)`` gives.
    """

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, behaviours, behaviour_mask, interest_mask, initial_logits, iterations: int, weight,
                scale: float = 0.0):
        rho = behaviour_mask.unsqueeze(-1).to(behaviours.dtype)  # [B, L, 1]: padded behaviours add nothing
        if scale:
            rho = rho * (scale * torch.rsqrt(_row_sums(behaviours * behaviours).clamp_min(1e-24)))
        logits = _initial_logits(initial_logits, interest_mask, behaviours.shape[1], behaviours.dtype)
        if iterations > 1:
            x_hat = torch.matmul(behaviours, weight.to(behaviours.dtype).t()) * rho  # [B, L, h]
            gram = torch.bmm(x_hat, x_hat.transpose(1, 2))  # G = x̂ x̂ᵀ [B, L, L]
            ones = gram.new_ones(gram.shape[-1], 1)
            for _ in range(iterations - 1):
                weights = torch.softmax(logits, dim=0).transpose(0, 1)  # aᵗ [B, K, L]
                projected = torch.bmm(weights, gram)  # aᵗ G = sᵗ x̂ᵀ
                squared = torch.matmul(projected * weights, ones).clamp_min(0.0)  # ‖sᵗ‖² [B, K, 1]
                # b_ij += u_jᵀ x̂_i = f(‖s_j‖)·(s_jᵀ x̂_i)
                logits = logits + (projected * (squared.sqrt() / (1.0 + squared))).transpose(0, 1)
        # w = a ⊙ ρᵀ [B, K, L]; a over each user's K_u interests
        scaled = torch.softmax(logits, dim=0).transpose(0, 1) * rho.transpose(1, 2)
        ctx.save_for_backward(behaviours, rho, scaled)
        ctx.scale = scale
        return torch.bmm(scaled, behaviours)

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_aggregated):
        behaviours, rho, scaled = ctx.saved_tensors
        grad = torch.bmm(scaled.transpose(1, 2), grad_aggregated)  # wᵀ g_y = ρ g_ĉ [B, L, h]
        if ctx.scale:
            along = _row_sums(behaviours * grad) * rho * rho / (ctx.scale * ctx.scale)  # ρ² t / s² [B, L, 1]
            grad = torch.addcmul(grad, behaviours, along, value=-1.0)
        return grad, None, None, None, None, None, None


def routing_aggregate(behaviours, behaviour_mask, interest_mask, initial_logits, iterations: int, weight,
                      scale: float = 0.0):
    """:class:`RoutingAggregate`: ``c [B, L, h]``, masks ``[B, L]`` and ``[B, K]`` (bool), initial logits
    ``[≥L, K]``, ``M`` (detached), the routing scale (0: ``c`` as it is) → ``y [B, K, h]``."""
    return RoutingAggregate.apply(behaviours, behaviour_mask, interest_mask, initial_logits, iterations,
                                  weight.detach(), scale)


class FusedRouting(torch.autograd.Function):
    """B2I dynamic routing and squash: ``x [B, L, h]`` (``M·c_i``, padded slots holding anything) →
    capsules ``u [B, K, h]`` (0 for unused interests).

    Used with ``iacn_routing_stop_gradient: false``; with ``stop_gradient`` it gives what
    :class:`RoutingAggregate`, ``M`` and :class:`Squash` give.

    Forward, as :class:`recbole_iacn.model.iacn.BehaviourToInterestRouting`: ``x̂ = x ⊙ mask``, ``b⁰`` from
    :func:`_initial_logits`, and for ``t = 0 … r−1``::

        aᵗ = softmax_K(bᵗ)      sᵗ = aᵗ x̂      uᵗ = squash(sᵗ)      bᵗ⁺¹ = bᵗ + uᵗ x̂ᵀ  (t < r−1)

    and the output is ``u^{r−1}``.

    Backward, given ``g_u = g u^{r−1}``. Squash: :func:`_squash_backward`.
    ``s = a x̂`` gives ``g_x̂ += aᵀ g_s`` and ``g_a = g_s x̂ᵀ``; the softmax over K gives
    ``g_b = a ⊙ (g_a − Σ_K a ⊙ g_a)``. With ``stop_gradient`` (MIND's and ComiRec's code: the refinement
    runs on ``stop_gradient(x̂)``) the weights ``a^{r−1}`` are constants, so only ``g_x̂ = (a^{r−1})ᵀ g_s``
    remains. Without it, the logits carry the gradient back through the iterations: writing ``Gᵗ`` for
    the whole gradient of ``bᵗ``, ``G^{r−1} = a ⊙ (g_a − Σ a ⊙ g_a)`` at ``t = r−1`` and, for ``t < r−1``
    (from ``bᵗ⁺¹ = bᵗ + uᵗ x̂ᵀ``), ``g_uᵗ = Gᵗ⁺¹ x̂``, ``g_x̂ += (Gᵗ⁺¹)ᵀ uᵗ``, then the squash, the
    product and the softmax of step ``t`` as above with ``Gᵗ = Gᵗ⁺¹ + aᵗ ⊙ (g_aᵗ − Σ aᵗ ⊙ g_aᵗ)``
    (``G⁰`` is not needed: ``b⁰`` is a constant). Finally ``g_x = g_x̂ ⊙ mask``: padded slots get 0.
    """

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, x, behaviour_mask, interest_mask, initial_logits, iterations: int, stop_gradient: bool):
        x_hat = x * behaviour_mask.unsqueeze(-1)  # padded behaviours add nothing, whatever weight they get
        x_hat_t = x_hat.transpose(1, 2).contiguous()  # bmm on the transposed view is about 3x slower on CPU
        logits = _initial_logits(initial_logits, interest_mask, x.shape[1], x.dtype)
        saved = []
        for t in range(iterations):
            weights = torch.softmax(logits, dim=0).transpose(0, 1)  # a [B, K, L], over each user's K_u interests
            s = torch.bmm(weights, x_hat)  # [B, K, h]
            capsules, norm, factor = squash_parts(s)
            if t < iterations - 1:
                logits = logits + torch.bmm(capsules, x_hat_t).transpose(0, 1)  # b_ij += u_jᵀ x̂_i
            if not stop_gradient or t == iterations - 1:
                saved += [weights, s, norm, factor, capsules]
        ctx.steps = 1 if stop_gradient else iterations  # the steps the gradient flows through
        ctx.save_for_backward(behaviour_mask, x_hat, *saved)
        return capsules

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_capsules):
        behaviour_mask, x_hat, *saved = ctx.saved_tensors
        steps = ctx.steps
        grad_x = None
        grad_u = grad_capsules
        grad_logits = None  # G^{t+1}
        for t in reversed(range(steps)):
            weights, s, norm, factor, capsules = saved[5 * t:5 * t + 5]
            if t < steps - 1:  # u^t reaches the loss only through b^{t+1} = b^t + u^t x̂ᵀ
                grad_u = torch.bmm(grad_logits, x_hat)
                grad_x = torch.baddbmm(grad_x, grad_logits.transpose(1, 2), capsules)
            grad_s = _squash_backward(s, norm, factor, grad_u)
            if grad_x is None:
                grad_x = torch.bmm(weights.transpose(1, 2), grad_s)  # [B, L, h]
            else:
                grad_x = torch.baddbmm(grad_x, weights.transpose(1, 2), grad_s)
            if t > 0:  # b⁰ is constant: the softmax of step 0 passes nothing on
                grad_weights = torch.bmm(grad_s, x_hat.transpose(1, 2))  # [B, K, L]
                step = weights * (grad_weights - (weights * grad_weights).sum(1, keepdim=True))
                grad_logits = step if grad_logits is None else grad_logits + step
        return grad_x * behaviour_mask.unsqueeze(-1), None, None, None, None, None


def fused_routing(x, behaviour_mask, interest_mask, initial_logits, iterations: int, stop_gradient: bool):
    """:class:`FusedRouting`: ``x = M·c [B, L, h]``, masks ``[B, L]`` and ``[B, K]`` (bool), initial logits
    ``[≥L, K]`` → capsules ``[B, K, h]``."""
    return FusedRouting.apply(x, behaviour_mask, interest_mask, initial_logits, iterations, stop_gradient)


class FusedAttentionSoftmax(torch.autograd.Function):
    """Label-aware attention and the softmax cross-entropy of the candidate: interests ``I [B, K, h]``
    (the MLP's output; rows of unused interests may hold anything), interest mask ``[B, K]``, candidate
    vectors ``C [B, 1+N, h]`` (column 0 the target ``c = C[:, 0]``, then the sampled negatives), excluded
    columns ``[B, 1+N]`` (``in_batch``: ``C`` is ``[B, 1, h]`` and the excluded mask ``[B, B]``) →
    ``-log P(c | i_u)`` per row ``[B]``.

    Forward, as :meth:`recbole_iacn.model.iacn.IaCN._candidate_losses`::

        z = I c  [B, K]      a = softmax over the valid interests of z^p (0 elsewhere)      i_u = aᵀ I  [B, h]
        l = C i_u  [B, 1+N]  (in_batch: l = i_u Tᵀ [B, B], T = the rows' targets), excluded columns −∞
        loss = logsumexp(l) − l_target        (column 0; in_batch the diagonal)

    Backward, given ``g [B]`` and ``q = softmax(l)`` (0 on excluded columns)::

        g_l = g ⊙ (q − onehot(target))
        g_iu = g_lᵀ C  (in_batch: g_l T)          g_C += g_l i_uᵀ  (in_batch: g_T += g_lᵀ i_u)
        g_I = a g_iuᵀ + g_z cᵀ,   g_a = I g_iu,   g_s = a ⊙ (g_a − Σ_K a ⊙ g_a),   g_z = g_s ⊙ p z^{p−1}
        g_c += g_zᵀ I   (into C[:, 0])

    Products over K or 1+N are ``bmm`` or a broadcast product and sum, whichever was faster on CPU for these
    shapes. ``p = 0`` makes ``z^p = 1``: no gradient through ``z``. On unused interests ``a = 0``, hence ``g_s = 0``
    and ``g_I = 0``: what those rows of ``I`` hold never matters (today's code multiplies them by 0).
    """

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, interests, interest_mask, candidates, excluded, power: int, in_batch: bool):
        target = candidates[:, 0]  # [B, h]
        z = torch.bmm(interests, target.unsqueeze(-1)).squeeze(-1)  # [B, K]
        scores = z if power == 1 else z.pow(power)
        weights = masked_softmax(scores, interest_mask)  # [B, K], 0 on unused interests
        user = (weights.unsqueeze(-1) * interests).sum(1)  # i_u [B, h]
        if in_batch:
            logits = user @ target.t()  # [B, B], the diagonal is the positive
        else:
            logits = torch.bmm(candidates, user.unsqueeze(-1)).squeeze(-1)  # [B, 1 + N], column 0 the positive
        log_probs = torch.log_softmax(logits.masked_fill(excluded, float("-inf")), -1)
        losses = -(log_probs.diagonal() if in_batch else log_probs[:, 0])
        ctx.power, ctx.in_batch = power, in_batch
        ctx.save_for_backward(interests, candidates, z, weights, user, log_probs)
        return losses

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_losses):
        interests, candidates, z, weights, user, log_probs = ctx.saved_tensors
        power, in_batch = ctx.power, ctx.in_batch
        target = candidates[:, 0]
        grad_logits = log_probs.exp() * grad_losses.unsqueeze(-1)  # g ⊙ q
        if in_batch:
            grad_logits.diagonal().sub_(grad_losses)
            grad_user = grad_logits @ target  # [B, h]
            grad_target = grad_logits.t() @ user  # [B, h]
            grad_candidates = None
        else:
            grad_logits[:, 0] -= grad_losses
            grad_user = (grad_logits.unsqueeze(-1) * candidates).sum(1)  # [B, h]
            grad_candidates = grad_logits.unsqueeze(-1) * user.unsqueeze(1)  # [B, 1 + N, h]
            grad_target = None
        grad_interests = weights.unsqueeze(-1) * grad_user.unsqueeze(1)  # [B, K, h]
        if power != 0:
            grad_weights = torch.bmm(interests, grad_user.unsqueeze(-1)).squeeze(-1)  # [B, K]
            grad_scores = weights * (grad_weights - (weights * grad_weights).sum(-1, keepdim=True))
            grad_z = grad_scores if power == 1 else grad_scores * (power * z.pow(power - 1))
            grad_interests = torch.addcmul(grad_interests, grad_z.unsqueeze(-1), target.unsqueeze(1))
            attention = (grad_z.unsqueeze(-1) * interests).sum(1)  # [B, h]
            grad_target = attention if grad_target is None else grad_target + attention
        if grad_candidates is None:
            grad_candidates = grad_target.unsqueeze(1)
        elif grad_target is not None:
            grad_candidates[:, 0] += grad_target
        return grad_interests, None, grad_candidates, None, None, None


def fused_attention_softmax(interests, interest_mask, candidates, excluded, power: int, in_batch: bool):
    """:class:`FusedAttentionSoftmax`: per-row ``-log P(c_t | i_u)`` ``[B]``."""
    return FusedAttentionSoftmax.apply(interests, interest_mask, candidates, excluded, power, in_batch)
