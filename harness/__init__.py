"""Test and benchmark harness: service processes, free ports, fake AWS credentials and moto.

The test suite and ``python -m bench`` both start real ``storyboard`` processes and AWS
stand-ins; this package is the one place that knows how, so the two never drift apart.
"""
