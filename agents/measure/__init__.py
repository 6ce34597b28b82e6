"""Measurement: experiments (speed, fidelity, agreement), their reports and the auto-benchmark."""
