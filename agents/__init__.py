"""The shell's brains and the factory's work: intents, actions, quantization."""
