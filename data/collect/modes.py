"""Live or batch, per LLM: the ``--mode`` override, else the LLM's ``mode``, else the study's;
``auto`` is batch where litellm drives the provider's batch API with OpenAI's request lines."""

from __future__ import annotations

from .study import LLMConfig, Study

# Providers whose batch input is OpenAI's JSONL (one chat request per line, ``custom_id``) and
# whose files, batches and batch list litellm reaches with OpenAI's protocol. Vertex AI and
# Bedrock (own line formats, storage buckets), Mistral (litellm lists no Mistral batches, and
# needs the model on every call) and xAI (its own batch handler) have batch APIs too: not driven
# here, so ``auto`` keeps them live.
BATCH_PROVIDERS = frozenset({"openai", "azure", "hosted_vllm", "litellm_proxy"})


def provider_of(model: str) -> tuple[str, str]:
    """(the provider's own model name, litellm's provider) of a litellm model string."""
    import litellm

    try:
        name, provider, _, _ = litellm.get_llm_provider(model=model)
    except Exception:  # litellm cannot tell: treat as its own provider, never batched
        return model, ""
    return name, provider


def resolve_mode(llm: LLMConfig, study: Study, override: str | None = None) -> str:
    """"live" or "batch" for this LLM."""
    mode = override or llm.mode or study.mode or "live"
    if mode == "auto":
        return "batch" if provider_of(llm.model)[1] in BATCH_PROVIDERS else "live"
    return mode


def check_batch(llm: LLMConfig) -> str | None:
    """Why this LLM cannot be collected in batch mode, or None."""
    provider = provider_of(llm.model)[1]
    if provider not in BATCH_PROVIDERS:
        return (f"{llm.name}: provider '{provider or 'unknown'}' ({llm.model}) has no batch "
                f"API misalign drives (it drives {', '.join(sorted(BATCH_PROVIDERS))}); use "
                "mode live or auto")
    return None
