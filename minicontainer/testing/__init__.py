"""Test machinery shipped with the package: the guest test lane (guest_lane.py) and the pytest
plugin that reports from inside the guest (lane_report.py)."""
