"""Prices per token from the study file or litellm's cost map; unknown models cost ``None``."""

from __future__ import annotations

from dataclasses import dataclass

from .study import LLMConfig

# Typical answer lengths for the estimate in --dry-run (the cap itself reserves max_tokens).
TYPICAL_OUTPUT_TOKENS = {"base": 8, "rag": 8, "cot": 250}


@dataclass(frozen=True)
class Pricing:
    input: float | None
    output: float | None
    source: str  # "study file", "litellm", or "unknown"

    @property
    def known(self) -> bool:
        return self.input is not None and self.output is not None

    def cost(self, tokens_in: int | None, tokens_out: int | None) -> float | None:
        if not self.known or tokens_in is None or tokens_out is None:
            return None
        return tokens_in * self.input + tokens_out * self.output


def pricing_for(llm: LLMConfig) -> Pricing:
    if llm.input_cost_per_token is not None and llm.output_cost_per_token is not None:
        return Pricing(llm.input_cost_per_token, llm.output_cost_per_token, "study file")
    import litellm

    try:
        info = litellm.get_model_info(llm.model)
    except Exception:  # litellm raises a plain Exception for models it has no entry for
        return Pricing(None, None, "unknown")
    inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if inp is None or out is None:
        return Pricing(None, None, "unknown")
    return Pricing(float(inp), float(out), "litellm")


def batch_pricing_for(llm: LLMConfig) -> Pricing:
    """The batch price: the study file's ``batch_*_cost_per_token``, else litellm's
    ``*_cost_per_token_batches``, else the live price (an upper bound: providers' batch prices
    are lower), labelled so."""
    if llm.batch_input_cost_per_token is not None and llm.batch_output_cost_per_token is not None:
        return Pricing(llm.batch_input_cost_per_token, llm.batch_output_cost_per_token,
                       "study file (batch)")
    import litellm

    try:
        info = litellm.get_model_info(llm.model)
    except Exception:  # no entry: only the study file's live price can stand in
        info = {}
    inp, out = info.get("input_cost_per_token_batches"), info.get("output_cost_per_token_batches")
    if inp is not None and out is not None:
        return Pricing(float(inp), float(out), "litellm (batch)")
    live = pricing_for(llm)
    if not live.known:
        return live
    return Pricing(live.input, live.output, f"{live.source} (live price: no batch price known)")


def approx_tokens(messages: list[dict[str, str]]) -> int:
    """About four characters a token: only for reservations and estimates, never for billing
    (billing uses the usage the provider returns)."""
    return sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)
