"""Search: choose the subnet with the best predicted accuracy under latency, MACs and parameter limits."""
