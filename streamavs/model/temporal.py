"""Causal temporal attention + Dirichlet-uncertainty smoothing (RAVS Sec. 3.3, adapted to live streams).

The stage sits on top of a per-frame segmenter. It never replaces the frame's mask: it adds a
correction to the frame's own mask logits, and the Dirichlet uncertainty decides how much of the
*temporal context* may enter that correction::

    u_t   = uncertainty(current, context, audio change)            (per pixel, in (0, 1])
    m_t   = m_frame,t + delta(current, (1 - u_t) * context, audio change)
    p_t   = sigmoid(upsample(m_t))

- ``m_frame`` is the segmenter's own logit (its mask head on the fused map). The delta head
  starts at zero, so an untrained stage *is* the frame-only model (identity at step 0, tested
  exactly), and training can only move it away where that lowers the loss.
- ``u`` is the normalised Dirichlet variance of an evidential head over {silent, sounding}
  (RAVS eq. 10, below). The intent: where the context has evidence (steady stretches: the same object
  sounding, or nothing sounding, for several frames) u is low and the attended past enters the
  correction and steadies the mask; where it has none (the sounding state is changing, object
  boundaries, scenes unlike training) u is high and the past is shut out, so the correction is
  computed from the current frame and the audio change alone and onsets are not held back by a
  stale past. The uncertainty therefore *is* the smoothing gate, as the design card asks; with
  ``uncertainty = False`` (the ablation) the context enters ungated. Measured, u is also high over
  objects that sound steadily (below, "What the gate does in practice").

Why this form (measured; bench/README.md, "Temporal stage v2"):
- The first stage replaced the frame's mask with its own head's; on a well-trained segmenter it
  cost 3.7 points of mIoU just after an onset and 2.3 of G-mIoU against frame-only
  (bench/results/temporal-ablation-long-2026-11-22.json), and the same stage without the
  uncertainty scored the same: the uncertainty did nothing. A residual that starts at the
  identity cannot start worse than frame-only.
- A first residual version let the uncertainty gate the *whole* correction (``m_frame + (1 - u)
  delta``). On the real-media test split it met every target against frame-only but lost to its
  own ungated ablation just after onsets (mIoU 46.4 vs 49.5;
  bench/results/real-media-temporal-ablation-gate-correction-2026-11-30.json): the correction is
  also a per-frame refinement, which the gate withheld exactly on the transition frames. Gating
  only the context keeps the refinement and withholds only the past.
- This form, on the same real-media test split (bench/results/real-media-temporal-ablation-v2-2026-11-30.json):
  mIoU just after an onset 50.3 (frame-only 46.2, ungated 47.5), G-mIoU 63.1 (58.9, 60.0), FPR
  just after silence 0.0021 (0.0022, 0.0018), flicker 0.0112 (0.0100, 0.0101); the uncertainty
  ranks the wrong pixels of transition frames with AUROC 0.95. It wins onsets and overall
  accuracy, not flicker.
- Its operating curve lies above frame-only's (at equal flicker ~2 points more mIoU just after
  onsets and G-mIoU), so where to run it matters as much as its form. The real-media engines run the stage
  trained on 1200 clips at the operating point selected on 200 validation clips: mask threshold
  0.7 with the runtime's mask hysteresis (band 0.2, reset by the sounding probability;
  :mod:`streamavs.engine.hysteresis`). On the test split (60 clips; 120 fresh clips) against
  frame-only: onsets +3.8 (+3.7), G-mIoU +3.8 (+3.1), FPR just after silence -26% (-22%),
  flicker -19% (-18%) (bench/README.md, "Mask hysteresis"). The stage without the uncertainty
  path is as good there just after onsets and better just after silence.
- What the gate does in practice (bench/README.md, "Is the difference real"): u is high over
  sounding objects whether or not their state changes (0.76 on steadily sounding objects, 0.04
  elsewhere), so it shuts the past out over them. Against the ungated ablation it lowers flicker
  and costs FPR just after silence (seed 0) or mIoU just after onsets (a second seed), beyond
  the noise of the clips (paired bootstrap). Letting the correction also see the ungated past
  (runs/v16), giving both stages an ungated feature-change signal (runs/v17), or reading u from
  the current frame alone and letting the past in where u is high (runs/v19: 12% less flicker
  than the ablation on real-media validation, 0.56 less mIoU just after onsets; on the synthetic
  test sets more false positives just after silence; runs/v20, with the audio change in that
  evidence: worse on both transition metrics) did not change that (all reverted). Nor does
  letting u set the runtime's hysteresis band per pixel (a probe on v22's stage, 100 validation
  clips, not kept): u is high exactly where the probability hovers near the threshold, so a band
  scaled by u measured as the fixed band and one scaled by 1 - u as no band.
- What u knows that the mask does not (runs/v25; bench/README.md, "Does the uncertainty tell more
  than the mask"): little. As an error detector on transition frames u's AUROC is that of the
  stage's own probability's closeness to the threshold (``streamavs.metrics.threshold_margin``):
  real media 0.970 vs 0.963 (validation), 0.960 vs 0.954 and 0.966 vs 0.961 (test, fresh);
  synthetic engine 0.940 vs 0.934 (validation). The evidential head has learned the mask's own
  confidence, which the ungated correction sees as well, so the gate brings no new information,
  only a prior: keep the current frame on unsure pixels. That prior pays on the synthetic
  benchmark and costs onsets on real media. Evidence read from the change alone (runs/v25:
  |current - past mean| and the logit change, over {stable, changed}) ranks errors worse than
  the margin (0.951 vs 0.964) and still lost to the ablation just after silence (reverted).
- Added to a trained ungated stage rather than trained from scratch (runs/v27: the gated stage
  started with the v23 ablation's mask logits, ``[temporal] init_stage``, and fine-tuned beside a copy of
  it by the same recipe, the final epoch kept in both): on 200 real validation clips the gated arm
  is behind its control on both transition metrics (at 0.5: onsets -0.05 [-0.19, 0.09], FPR just
  after silence +0.00006 [0.00002, 0.00010]), although its u now ranks errors better than the
  margin (0.975 vs 0.953; on the two real test sets 0.967 vs 0.940 and 0.972 vs 0.940). The gate
  learns almost nothing the ungated correction lacks.
- The same weights with the gate knocked out (fixed at 0, or at its mean, and folded into the
  refinement: :meth:`fixed_gate_state`, ``python -m streamavs.bench.knockout``; rule R12,
  bench/README.md "The gate knocked out"): on real media the shipped stage beats its knockouts by
  3.3-6.9 points just after onsets and 4.1-9.7 of G-mIoU on validation and both test sets, and
  loses just after silence (FPR about twice the knockouts'): the stage uses its gate, and the
  gate trades one transition metric for the other. On the synthetic benchmark it beats them on
  both, within the noise.
- On benchmark revision 2 (off-screen sound as loud as a sounding object), retrained with its
  segmenter (runs/v21; bench/README.md, "Revision 2: retrained"): on the synthetic benchmark the
  stage meets every target against frame-only on both test sets and beats its ablation on both
  transition metrics on validation and 60 test clips (a tie just after onsets on 120 fresh
  ones); it is the synthetic engine's stage. On real media the ablation still wins just after
  onsets, and the full stage missed frame-only there by 0.03 on the fresh clips. Retrained
  again (runs/v22): at the point balancing the four targets on validation (0.5, band 0.1) it
  gains 4-6 points of G-mIoU over frame-only on both test sets but flickers 2-5% more; at (0.7,
  0.1) it meets every target on 120 unused test clips. Against its ablation it wins onsets on
  validation and 60 test clips and never wins both transition metrics (bench/README.md, "a
  second real-media attempt").

Inputs per frame: the fused map (B, C, h, w), the frame logit (B, 1, h, w) and the sounding
logit (B,) of the segmenter. Audio change is given explicitly: every cached slot keeps the raw
frame and sounding logits beside its projected features, and the current frame sees the change
of both against the mean of its valid past (a source that starts sounding shows as a jump of
the sounding logit) through the same features that produce the gate.

Audio change (``audio_dim > 0``; ``[temporal] audio_change``, not shipped: bench/README.md R14)
----------------------------------------------------------------------------------------------
Off-screen sound after an object's own sound is where the gated stage loses to its knockout just
after silence, and there the sounding probability hardly falls (R13). With ``audio_dim`` the
stage also takes the segmenter's audio embedding: each slot keeps a unit code of it (a learned
projection to ``AUDIO_CODE`` channels, broadcast over the map), and the change gains one channel,
1 - cosine of the current code and the mean of the valid past's codes (0 at stream start).
Measured (runs/v28, real validation 200 at the shipped point): both arms had fewer false
positives just after silence than without it, but the gated stage still lost to its knockout and
to its trained ablation there (FPR just after silence +0.00046 and +0.00020) while winning onsets
(+2.5 and +2.3): the same trade, smaller. No shipped engine uses it.

Streaming form
--------------
A pure function ``(inputs, cache) -> (outputs, new_cache)``. The cache holds, for the previous
``T-1`` frames (oldest first), ``dim`` projected channels, then the frame logit, the sounding
logit, the audio code (only with ``audio_dim``) and a *valid* flag (1 for a real frame, 0 for
padding): ``(T-1, dim + 3, h, w)``, or ``dim + 3 + AUDIO_CODE`` channels with the audio change. At
stream start the cache is all zeros, so every slot is invalid and masked out of the attention:
the first frame attends only to itself, exactly as in the batch form where frame t attends to
frames ``max(0, t-T+1) .. t`` (a causal band mask). Running frame by frame with the cache
equals running the whole clip at once (tested to 1e-5).

Uncertainty (RAVS eq. 10)
-------------------------
``alpha = softplus(logits) + 1`` (evidence + 1) per pixel over {silent, sounding}. The
Dirichlet variance ``delta_c = alpha_c (S - alpha_c) / (S^2 (S + 1))`` is the same for both
classes when C = 2 and at most 1/12 (alpha = (1, 1), no evidence); ``u = 12 delta`` is
normalised to (0, 1]. RAVS eq. 11 (``sigma(m) / (delta + eps)``) is not used: it is unbounded,
not a probability, and no fixed threshold works on it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from streamavs.errors import ConfigError

_MASKED = -1.0e4  # additive attention bias for invalid cache slots (finite: exports cleanly)
_GATE_PREFIXES = ("evidence.", "alpha_head.")  # the parameters only the gated stage has
RAW_CHANNELS = 3  # per cached slot after the projected features: frame logit, sounding logit, valid
_CHANGE_CHANNELS = 4  # current minus past mean, and its magnitude, for the frame and sounding logits
AUDIO_CODE = 8  # with audio_dim > 0: channels of the audio code each slot keeps (before valid)


@dataclass(frozen=True)
class TemporalConfig:
    """Shape of the temporal stage. Saved with every checkpoint that has the stage."""

    in_channels: int  # channels of the segmenter's fused feature map
    window: int = 5  # T: the current frame plus T-1 cached ones
    dim: int = 32  # attention width per pixel
    heads: int = 4
    uncertainty: bool = True  # False: the context enters the correction ungated (the ablation)
    version: int = 3  # 3: residual on the frame's logits; the uncertainty gates the temporal context
    audio_dim: int = 0  # > 0: the segmenter's audio embedding width; the stage also sees how far the sound moved

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError(f"temporal window must be >= 1 frame, got {self.window}")
        if self.audio_dim < 0:
            raise ConfigError(f"temporal audio_dim must be 0 (no audio change input) or the segmenter's audio "
                              f"embedding width, got {self.audio_dim}")
        if self.dim % self.heads:
            raise ConfigError(f"temporal dim {self.dim} must be divisible by heads {self.heads}")
        if self.version != 3:
            raise ConfigError(f"temporal stage version {self.version} is not supported by this StreamAVS (only 3); "
                              "retrain the stage with `streamavs train -c training/configs/*_temporal_full.toml`")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TemporalConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown temporal config keys {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        if "version" not in data:  # saved before the residual stage existed
            raise ConfigError("this checkpoint holds the first temporal stage (it replaced the frame's mask), which "
                              "this StreamAVS no longer runs; retrain the stage (training/configs/*_temporal_full.toml)")
        if data["version"] == 2 and not data.get("uncertainty", True):
            data = {**data, "version": 3}  # without the uncertainty, versions 2 and 3 are the same network
        return cls(**data)

    def cache_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Per-stream cache shape (T-1, dim + 3 [+ AUDIO_CODE], h, w) for a fused map of h x w."""
        return (self.window - 1, self.dim + self.raw_channels, height, width)

    @property
    def raw_channels(self) -> int:
        """Channels per cached slot after the projected features."""
        return RAW_CHANNELS + (AUDIO_CODE if self.audio_dim else 0)

    @property
    def change_channels(self) -> int:
        """Channels of the change the refinement and the evidence read beside current and past."""
        return _CHANGE_CHANNELS + (1 if self.audio_dim else 0)


class TemporalOutput(NamedTuple):
    mask_logits: torch.Tensor  # (B, 1, h, w) frame logit + correction, at the fused map's resolution
    mask_prob: torch.Tensor  # (B, 1, h, w) sigmoid(mask_logits)
    uncertainty: torch.Tensor  # (B, 1, h, w) normalised Dirichlet variance in (0, 1]; zeros if disabled
    alpha: torch.Tensor | None  # (B, 2, h, w) Dirichlet parameters {silent, sounding}, or None


def dirichlet_uncertainty(alpha: torch.Tensor) -> torch.Tensor:
    """Normalised eq. 10 for C = 2: 12 * alpha_0 * alpha_1 / (S^2 (S + 1)), in (0, 1] for alpha >= 1.

    alpha: (B, 2, h, w) -> (B, 1, h, w).
    """
    s = alpha.sum(dim=1, keepdim=True)  # (B, 1, h, w)
    prod = alpha[:, :1] * alpha[:, 1:]
    return 12.0 * prod / (s * s * (s + 1.0))


class TemporalStage(nn.Module):
    """Causal per-pixel attention over T frames; a zero-initialised correction of the frame's
    logits, into which a Dirichlet uncertainty head lets the attended past."""

    def __init__(self, config: TemporalConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.proj = nn.Sequential(nn.Conv2d(config.in_channels + 2, d, 1), nn.GroupNorm(4, d), nn.ReLU())
        self.query = nn.Conv2d(d, d, 1)
        self.key = nn.Conv2d(d, d, 1)
        self.value = nn.Conv2d(d, d, 1)
        self.out = nn.Conv2d(d, d, 1)
        self.refine = nn.Sequential(nn.Conv2d(2 * d + config.change_channels, d, 3, padding=1), nn.ReLU())
        self.delta_head = nn.Conv2d(d, 1, 1)
        nn.init.zeros_(self.delta_head.weight)  # identity at step 0: the frame-only model
        nn.init.zeros_(self.delta_head.bias)
        if config.uncertainty:  # the evidence read from the same inputs, before the gate
            self.evidence = nn.Sequential(nn.Conv2d(2 * d + config.change_channels, d, 3, padding=1), nn.ReLU())
            self.alpha_head = nn.Conv2d(d, 2, 1)
        else:
            self.evidence, self.alpha_head = None, None
        self.audio_code = nn.Linear(config.audio_dim, AUDIO_CODE) if config.audio_dim else None

    def start_from_ablation(self, state: dict[str, torch.Tensor], evidence: float) -> float:
        """Load the `state` of an ungated stage of the same shape into this gated one, so that its mask
        logits are that stage's (to float rounding): the Dirichlet head starts with zero weights and
        `evidence` per class, so u is one value u0 at every pixel, and the refinement's weights on the
        attended past are divided by 1 - u0 (the past enters it as ``(1 - u0) * mixed``). Returns u0."""
        if self.alpha_head is None:
            raise ConfigError("start_from_ablation needs a stage with the uncertainty path (uncertainty = true)")
        own = self.state_dict()
        gate = {k for k in own if k.startswith(_GATE_PREFIXES)}
        if set(state) != set(own) - gate:
            raise ConfigError(f"not the state of an ungated stage of this shape: keys {sorted(set(state) ^ (set(own) - gate))} "
                              "differ; pass the temporal.pt of a run with uncertainty = false and the same window, dim, heads")
        self.load_state_dict({**own, **state})
        u0 = float(dirichlet_uncertainty(torch.full((1, 2, 1, 1), 1.0 + evidence)))
        with torch.no_grad():
            self.alpha_head.weight.zero_()
            self.alpha_head.bias.fill_(math.log(math.expm1(evidence)))  # softplus^-1: alpha = 1 + evidence
            d = self.config.dim
            self.refine[0].weight[:, d:2 * d] /= 1.0 - u0  # the refinement reads [current, past, change] (_attend)
        return u0

    def fixed_gate_state(self, u: float) -> dict[str, torch.Tensor]:
        """The state of an ungated stage (``uncertainty = False``) whose mask logits are this gated
        stage's with ``u`` fixed at one value everywhere: the inverse of :meth:`start_from_ablation`.
        The refinement's weights on the attended past are multiplied by ``1 - u`` and the Dirichlet
        head is dropped, so ``u = 0`` lets the past in ungated, with the same weights."""
        if self.alpha_head is None:
            raise ConfigError("fixed_gate_state needs a stage with the uncertainty path (uncertainty = true)")
        if not 0.0 <= u <= 1.0:
            raise ConfigError(f"a fixed gate u must lie in [0, 1] (the range of the Dirichlet uncertainty), got {u}")
        d = self.config.dim
        state = {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith(_GATE_PREFIXES)}
        state["refine.0.weight"][:, d:2 * d] *= 1.0 - u  # the refinement reads [current, past, change] (_attend)
        return state

    # -- the two entry points -------------------------------------------------------------
    def step(self, fused: torch.Tensor, frame_logits: torch.Tensor, sounding_logit: torch.Tensor,
             cache: torch.Tensor, audio: torch.Tensor | None = None) -> tuple[TemporalOutput, torch.Tensor]:
        """One streaming step.

        fused: (B, C, h, w); frame_logits: (B, 1, h, w); sounding_logit: (B,);
        cache: (B, T-1, dim + raw_channels, h, w), zeros at stream start; audio: (B, D_a), the
        segmenter's audio embedding (only with ``audio_dim``). Returns this frame's outputs and
        the new cache (oldest slot dropped, this frame appended as valid).
        """
        entry = self._entry(fused, frame_logits, sounding_logit, audio).unsqueeze(1)  # (B, 1, dim+raw, h, w)
        window = torch.cat([cache, entry], dim=1)  # (B, T, dim+raw, h, w)
        return self._attend(window), window[:, 1:]

    def forward_clip(self, fused: torch.Tensor, frame_logits: torch.Tensor,
                     sounding_logit: torch.Tensor, audio: torch.Tensor | None = None) -> TemporalOutput:
        """Batch form over whole clips with a causal band mask.

        fused: (B, L, C, h, w); frame_logits: (B, L, 1, h, w); sounding_logit: (B, L); audio:
        (B, L, D_a) (only with ``audio_dim``).
        Returns outputs stacked over time: tensors of shape (B, L, ...)."""
        b, length, c, h, w = fused.shape
        flat_audio = None if audio is None else audio.reshape(b * length, -1)
        entries = self._entry(fused.reshape(b * length, c, h, w), frame_logits.reshape(b * length, 1, h, w),
                              sounding_logit.reshape(b * length), flat_audio).reshape(b, length, -1, h, w)
        t = self.config.window
        padded = torch.cat([entries.new_zeros(b, t - 1, *entries.shape[2:]), entries], dim=1)  # (B, T-1+L, dim+raw, h, w)
        outs = [self._attend(padded[:, i:i + t]) for i in range(length)]  # window of frame i: padded[i : i+T]
        stack = lambda xs: torch.stack(xs, dim=1) if xs[0] is not None else None  # noqa: E731
        return TemporalOutput(*(stack([o[k] for o in outs]) for k in range(4)))

    # -- shared core ----------------------------------------------------------------------
    def _entry(self, fused: torch.Tensor, frame_logits: torch.Tensor, sounding_logit: torch.Tensor,
               audio: torch.Tensor | None) -> torch.Tensor:
        """One cache slot per frame: (N, dim + raw_channels, h, w) = projected features, frame logit,
        sounding logit, [the unit audio code, AUDIO_CODE channels, with audio_dim], valid."""
        n, _, h, w = fused.shape
        snd = sounding_logit.reshape(n, 1, 1, 1).expand(n, 1, h, w)  # (N, 1, h, w)
        feat = self.proj(torch.cat([fused, frame_logits, snd], dim=1))  # (N, dim, h, w)
        parts = [feat, frame_logits, snd]
        if self.audio_code is not None:
            if audio is None:
                raise ConfigError("this temporal stage reads the audio change (audio_dim > 0): pass the segmenter's "
                                  "audio embedding")
            code = F.normalize(self.audio_code(audio), dim=1)  # (N, AUDIO_CODE), unit length
            parts.append(code.reshape(n, AUDIO_CODE, 1, 1).expand(n, AUDIO_CODE, h, w))
        return torch.cat([*parts, fused.new_ones(n, 1, h, w)], dim=1)

    def _attend(self, window: torch.Tensor) -> TemporalOutput:
        """window: (B, T, dim + raw_channels, h, w) oldest first, the current frame last."""
        b, t, _, h, w = window.shape
        d = self.config.dim
        heads, hd = self.config.heads, d // self.config.heads
        feats, raw, valid = window[:, :, :d], window[:, :, d:d + 2], window[:, :, -1:]  # (B, T, d|2|1, h, w)
        current, frame_logits = feats[:, -1], raw[:, -1, :1]  # (B, d, h, w), (B, 1, h, w)
        flat = feats.reshape(b * t, d, h, w)
        q = self.query(current).reshape(b, heads, hd, 1, h * w)  # (B, nh, hd, 1, P)
        k = self.key(flat).reshape(b, t, heads, hd, h * w).transpose(1, 2)  # (B, nh, T, hd, P)
        v = self.value(flat).reshape(b, t, heads, hd, h * w).transpose(1, 2)  # (B, nh, T, hd, P)
        scores = (q.transpose(2, 3) * k).sum(dim=3) / hd**0.5  # (B, nh, T, P)
        bias = (1.0 - valid.reshape(b, 1, t, h * w)) * _MASKED  # (B, 1, T, P)
        attn = torch.softmax(scores + bias, dim=2)  # (B, nh, T, P)
        mixed = self.out((attn.unsqueeze(3) * v).sum(dim=2).reshape(b, d, h, w))  # (B, d, h, w)
        # audio change: the current frame and sounding logits against the mean of the valid past
        past_valid = valid[:, :-1]  # (B, T-1, 1, h, w)
        past_n = past_valid.sum(dim=1)  # (B, 1, h, w): valid past slots, 0 at stream start
        past_mean = (raw[:, :-1] * past_valid).sum(dim=1) / past_n.clamp(min=1.0)  # (B, 2, h, w)
        has_past = (past_n > 0).to(raw.dtype)  # (B, 1, h, w)
        change = (raw[:, -1] - past_mean) * has_past  # (B, 2, h, w)
        change = torch.cat([change, change.abs()], dim=1)  # (B, 4, h, w)
        if self.audio_code is not None:  # how far the sound moved: 1 - cosine of the current code and the past's mean
            codes = window[:, :, d + 2:d + 2 + AUDIO_CODE]  # (B, T, AUDIO_CODE, h, w), unit length (0 in padding)
            past_code = (codes[:, :-1] * past_valid).sum(dim=1) / past_n.clamp(min=1.0)  # (B, AUDIO_CODE, h, w)
            moved = 1.0 - F.cosine_similarity(codes[:, -1], past_code, dim=1, eps=1e-6).unsqueeze(1)  # (B, 1, h, w)
            change = torch.cat([change, moved * has_past], dim=1)  # (B, 5, h, w)
        if self.alpha_head is None:
            x = self.refine(torch.cat([current, mixed, change], dim=1))  # (B, d, h, w)
            logits = frame_logits + self.delta_head(x)  # the delta head is zero at initialisation
            return TemporalOutput(logits, torch.sigmoid(logits), torch.zeros_like(logits), None)
        evidence = self.evidence(torch.cat([current, mixed, change], dim=1))  # (B, d, h, w)
        alpha = F.softplus(self.alpha_head(evidence)) + 1.0  # (B, 2, h, w)
        u = dirichlet_uncertainty(alpha)  # (B, 1, h, w)
        x = self.refine(torch.cat([current, (1.0 - u) * mixed, change], dim=1))  # the past enters where u is low
        # (this input order, current / past / change, is what start_from_ablation rescales)
        logits = frame_logits + self.delta_head(x)
        return TemporalOutput(logits, torch.sigmoid(logits), u, alpha)
