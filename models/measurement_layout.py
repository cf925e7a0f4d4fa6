"""Where the joint measurement model's data and head sit in the packed arrays: the header slots
and section numbers ``fast_measurement.py`` writes and ``measurement_kernels.py`` /
``measurement_head.py`` read (kept apart so packing does not import, and so compile, them)."""

# Header slots (Z[0:16]): sizes, flags, counts of the head's tables.
(M_T, M_S, M_R, M_C, M_NL, M_NT, M_L, M_FAM, M_SUB, M_VA, M_NX, M_NVAR, M_NBLK,
 M_NOPS, M_HEAD, M_P) = range(16)
SUB_NONE, SUB_LLM, SUB_FAMILY = 0, 1, 2  # latents below the cell: none, LLM, LLM and family

# The likelihood's sections, in packing order (fixed numbers); the priors and bases follow.
# The LLM ratings pattern by pattern: its cells (S_PCELLS, from S_PCELL_PTR), and their sums as
# one block per pattern, source-major (a source's sums over the pattern's cells contiguous:
# S_BLOCK from S_BLOCK_PTR), so a pass over a block runs down contiguous columns.
(S_CELL_TASK, S_CELL_LESSON, S_LESSON_TEACHER, S_LESSON_TASK, S_TEACHER_TASK, S_PCELL_PTR,
 S_PCELLS, S_BLOCK_PTR, S_BLOCK, S_SRC_LLM, S_LLM_FAM, S_NE, S_SE, S_ER_PTR, S_ER_RATER,
 S_ER_N, S_COL_N, S_COL_SUM, S_COL_SQ, S_VA, S_VA_OBS, S_VA_KNOWN, S_CELL_PAT, S_PAT_TASK,
 S_PAT_PTR, S_PAT_SRC, S_PAT_N, S_PAT_CELLS) = range(28)
# A cell's count pattern: its task and how many ratings each source gave it. What depends only
# on the counts (the information J, the sub-cell latents' shrinkage and log determinants) is
# computed once per pattern: one per task in a balanced design.
# The head's tables, relative to the section in Z[M_HEAD].
S_VARS, S_ROLES, S_BLOCKS, S_OPS = range(4)

# A prior variable: x offset, size (1 or the tasks), transform, prior section (F: code and up
# to three parameters, then the interval's bounds; code −1 is Uniform).
VAR = 4
T_IDENTITY, T_LOG, T_INTERVAL = 0, 1, 2
UNIFORM = -1.0

# Roles the likelihood reads, each a prior variable's index (−1: not in the model).
(R_MU_E, R_SIG_RATER, R_SIG_EXP, R_MU_LLM, R_LAM_MEAN, R_LOGN_MEAN, R_TAU_LLM, R_TAU_FAM,
 R_Q_CELL, R_S_CELL, R_Q_LESSON, R_S_LESSON, R_Q_TEACHER, R_S_TEACHER, R_VA_NU0, R_VA_SD,
 R_VA_RHOS, R_VA_ROOM) = range(18)
N_ROLES = 18

# An effect block: x offset, coordinates per task, σ's variable, centred (1/0), basis section
# (rows × coordinates), target, map section (each source's or rater's row).
BLOCK = 7
TO_MU, TO_LAMBDA, TO_LOG_NOISE, TO_RATER = range(4)

# Trace values: copy x, a prior variable's natural value, a block's effect, a source
# parameter (mu_source, lambda_source, noise_sd_source), value-added's ρ_q. Each op: kind,
# argument, position, size.
OP_COPY, OP_NAT, OP_EFFECT, OP_SOURCE, OP_RHO_Q = range(5)
