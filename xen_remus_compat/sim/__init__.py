"""The simulated Xen (simxen) wrapper and the demo that runs on it."""
