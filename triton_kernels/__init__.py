"""Triton kernels of pyalign (installed as ``pyalign.triton_kernels``)."""
