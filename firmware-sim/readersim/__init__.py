"""Reader simulator for the Trace Edge Agent.

Independent of the ``agent`` package on purpose: it has its own encoders, so that a bug shared by
the agent's codecs and the simulator cannot hide. Devices are pure state machines (bytes in,
frames out, injected clock and rng); only :mod:`readersim.server` touches real I/O.
"""

__version__ = "0.1.0"
