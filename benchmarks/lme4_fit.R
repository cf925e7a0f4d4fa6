# lme4's REML point estimate of E1's variance components, on the ratings file misalign fits.
# Usage: Rscript lme4_fit.R ratings.csv   (columns written by benchmarks/startup.py)
# Prints one JSON line: seconds to read, seconds to fit, the variance components.
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
d <- read.csv(args[1], colClasses = c(rep("factor", 14), "numeric"))
t1 <- proc.time()[["elapsed"]]
# The components misalign's E1 reports, but the experts' severity (a weighted multi-membership
# effect lme4 has no term for; the simulated reference here is a single expert mean).
f <- error ~ 1 + (1 | llm) + (1 | family) + (1 | prompt) + (1 | task) + (1 | llm_prompt) +
  (1 | llm_task) + (1 | prompt_task) + (1 | llm_prompt_task) + (1 | unit_task) + (1 | unit) +
  (1 | transcript) + (1 | teacher) + (1 | lineage) + (1 | llm_unit_task)
m <- lmer(f, data = d, REML = TRUE,
          control = lmerControl(calc.derivs = FALSE))
t2 <- proc.time()[["elapsed"]]
vc <- as.data.frame(VarCorr(m))
cat(sprintf('{"read_s": %.3f, "fit_s": %.3f, "n": %d, "components": {%s}}\n', t1 - t0, t2 - t1,
            nrow(d), paste(sprintf('"%s": %.6g', vc$grp, vc$vcov), collapse = ", ")))
