"""Layer 7: what the book renders. Tables and figures built from stored results, never computing
one, so notebook cells stay short. Uses the experiments layer and below, and matplotlib.
"""
