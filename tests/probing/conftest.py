"""The probing tests' trained LeNet-5 (``lenet_checkpoint``) lives in tests/conftest.py,
shared with the attribution and attack tests so that it is trained once per session."""
