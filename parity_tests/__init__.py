"""The parity harness: properties that check an engine against torch autograd.

plugin.py (the pytest11 entry point) adds --engine and registers the hypothesis profiles;
profile.py loads one when the properties are collected. Importing this package has no effects.
"""
