"""The bottom layer: typed values every other layer shares. Imports nothing from raorch."""
