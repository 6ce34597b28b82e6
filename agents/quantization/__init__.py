"""The quantization factory: plan, acquire, convert, quantize, verify and record a model variant."""
