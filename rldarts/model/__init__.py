"""Layer 1, the paper's model: candidate ops (``ops``, with the CPU conv and pool
kernels behind ``conv`` / ``pooling``), genotypes as plain data, search and fixed cells,
networks, the search methods, the random genotype sampler and the drawings of cells and
alphas. Imports ``common`` only."""
