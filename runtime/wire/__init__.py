"""Client-format translators (Anthropic, GenAI, Responses ingress and their stream encoders), above
`providers/`. The byte-level codecs they and the adapters share live in `runtime/codecs/`."""
