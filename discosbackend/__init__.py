"""discosbackend: serve, simulate, probe and test DISCOS backends.

The DISCOS backend protocol (version 1.4) is a line-based request/reply
protocol over TCP.  Importing the package registers the astropy ``discos``
time format (ACS 100 ns ticks since 1970-01-01 UTC).
"""

__version__ = "2.0.0.dev0"
__protocol_version__ = "1.4"

from discosbackend import timediscos  # noqa: E402,F401  (registers the format)
