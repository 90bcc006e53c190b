"""Field tools (issue 7): check-config warnings, doctor, local status/tail, metrics/health,
buffer inspection. Kept apart from the data path: the agent imports only ``tap`` and
``server``, and a failure here never stops reading, buffering or forwarding."""
