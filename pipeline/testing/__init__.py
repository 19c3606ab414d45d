"""Real local services for the tests and benchmarks: the embedded model behind vLLM's
OpenAI-compatible server on 127.0.0.1 (started and always stopped again), and the plumbing of the
HTTP proxies put in front of it. Nothing in the pipeline's stages imports this package."""
