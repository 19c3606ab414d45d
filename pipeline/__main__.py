import sys

from pipeline.cli import main

# vLLM starts its engine in spawned processes, which re-import __main__: keep the guard.
if __name__ == "__main__":
    sys.exit(main())
