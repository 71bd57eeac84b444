"""Test-only: run a script with one host name resolving to a given address.

FIXEDGATE_RESOLVE=NAME=IP plays the part of public DNS for the gateway test (gw.test exists only
in the test); the script itself and its TLS checks (SNI and certificate name) stay unchanged.
"""
import os
import runpy
import socket
import sys

name, addr = os.environ["FIXEDGATE_RESOLVE"].split("=", 1)
_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    return _getaddrinfo(addr if host == name else host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
runpy.run_path(sys.argv[1], run_name="__main__")
