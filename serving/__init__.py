"""Portfolio OS model servers: one ``kserve.Model`` per served model (Open Inference Protocol v2)."""
