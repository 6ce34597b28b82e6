"""HTTP routes: native (the brief's endpoints), OpenAI- and Ollama-compatible, ops, side-by-side."""
