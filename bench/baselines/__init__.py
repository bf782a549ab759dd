"""What the benchmark compares streamlane with: a bare consumer (the ceiling) and the same job
written with bytewax's per-event operators."""
