"""The `ofakit` command: a thin layer that turns argv into library calls."""
import os

# NumPy's OpenBLAS starts one thread per core for each matrix product. The search's products are small (a generation's
# children through the accuracy predictor), so on a machine whose cores are busy those threads wait on each other: a
# 50,000-subnet `specialize` took 24-27 s instead of 6-9 s on a loaded 2-core VM. The command therefore runs NumPy's
# BLAS on one thread unless the user chose otherwise. This must run before NumPy is first imported; torch keeps its own
# threads (OMP_NUM_THREADS, torch.set_num_threads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
