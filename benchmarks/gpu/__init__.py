"""GPU measurements (PyTorch with CUDA only): never imported by the tests."""
