"""Where E1's head (priors, blocks, residual variances, trace values) sits in the packed arrays:
the slot and section numbers ``fast_e1.py`` writes and ``e1_kernels.py`` reads (kept apart so
packing does not import, and so compile, the kernels)."""

# Header slots of the head (Z[20:40]); sections are relative to Z[H_HEAD].
H_NCOMP, H_BUDGET, H_HEAD, H_NB, H_K, H_RES, H_TAU, H_ZRES = 20, 21, 22, 23, 24, 25, 27, 28
H_NA, H_NX, H_NOPS = 30, 31, 32
(S_COMPX, S_KAPPA, S_CPRIOR, S_AGG, S_AGG_A, S_SHARE_B, S_TOTAL, S_DIRC, S_LEVC, S_SUBC,
 S_BLOCKS, S_TAU, S_TBASIS, S_TWEIGHT, S_OPS, S_AGG_M, S_RESC, S_CELLC) = range(18)
BLOCK = 7  # x offset, size, component (or prior section), kind, M section, G section, target
CENTRED, NON_CENTRED, OWN_PRIOR = 0, 1, 2
# TO_BASE: into the means, and part of the base (intercept + task effect) that Student-t's
# cell latents are centred on.
TO_MEANS, TO_OFFSETS, TO_BASE = 0, 1, 2
# Trace values (expand): copy x, exp x, σ_total, σ_c, a block's effect, residual log SDs by
# task, residual SDs by task, Student-t's realised mean squared residual.
OP_COPY, OP_EXP, OP_TOTAL, OP_SIGMA, OP_EFFECT, OP_RES_LOG_SD, OP_RES_SD, OP_RESID_MS = range(8)
