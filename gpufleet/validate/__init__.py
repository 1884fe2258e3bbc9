"""`gpufleet validate`: config repo checks against the real API server plus policy-as-code rules."""
