"""Layer 4: sparse storage. Formats (dense, CSR, bitmask, N:M) with exact byte counts, packed
integer codes, and the compact save / load of a whole model. Uses core and model, and safetensors.
"""
