from setuptools import setup

setup(cffi_modules=["csrc/build_core.py:ffi", "csrc/build_net.py:ffi"])
