"""``make bench``: our implementation against the diffusers reference and the machine's own limits."""
