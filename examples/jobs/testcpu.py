"""testcpu: a CPU load for profiling — multiply two random 1000x1000 matrices, repeatedly for about a second.

Store and run it on a worker:

    import omegaml_otel as om
    om.jobs.put('examples/jobs/testcpu.py', 'testcpu')
    om.runtime.job('testcpu').run().get()
"""
import logging
import time

import numpy as np

start = time.perf_counter()
a = np.random.rand(1000, 1000)
b = np.random.rand(1000, 1000)
c = a @ b
rounds = 1
while time.perf_counter() - start < 1.0:
    c = a @ b
    rounds += 1
print("result shape", c.shape)
logging.getLogger("testcpu").warning("testcpu: %d matmuls of 1000x1000 in %.2f s", rounds, time.perf_counter() - start)
