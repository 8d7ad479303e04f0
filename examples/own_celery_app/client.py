"""Send one task to the worker and wait for its result: ``python client.py``."""
from theirapp import add

if __name__ == "__main__":
    print(add.delay(2, 3).get(timeout=30, interval=0.05))
