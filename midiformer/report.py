"""python -m midiformer.report: the report itself lives in midiformer/sweeps/report.py."""
from midiformer.sweeps.report import main

if __name__ == "__main__":
    main()
