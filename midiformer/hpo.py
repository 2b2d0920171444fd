"""python -m midiformer.hpo: the search itself lives in midiformer/sweeps/hpo.py."""
from midiformer.sweeps.hpo import main

if __name__ == "__main__":
    main()
